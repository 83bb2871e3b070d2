{{/*
The shared result cache (sharedCache.*): its environment as EnvVar objects, the
claim of the fs volume. See "Sharing results across pods" in the chart's README.
*/}}
{{- define "vipsgate.sharedCacheEnv" -}}
{{- $c := .Values.sharedCache -}}
{{- if $c.use }}
{{- if not (has $c.use (list "fs" "s3" "redis" "gcs" "abs")) }}
{{- fail (printf "sharedCache.use must be fs, s3, gcs, abs or redis (or empty), not %q" $c.use) }}
{{- end }}
- name: IMGPROXY_CACHE_USE
  value: {{ $c.use | quote }}
{{- with $c.pathPrefix }}
- name: IMGPROXY_CACHE_PATH_PREFIX
  value: {{ . | quote }}
{{- end }}
- name: VIPSGATE_CACHE_TTL
  value: {{ $c.ttlSeconds | int | toString | quote }}
- name: VIPSGATE_CACHE_TIMEOUT
  value: {{ $c.timeoutSeconds | toString | quote }}
{{- if eq $c.use "fs" }}
- name: IMGPROXY_CACHE_FS_ROOT
  value: {{ $c.fs.mountPath | quote }}
{{- else if eq $c.use "s3" }}
- name: IMGPROXY_CACHE_BUCKET
  value: {{ required "sharedCache.s3.bucket is required when sharedCache.use is s3" $c.s3.bucket | quote }}
{{- with $c.s3.region }}
- name: IMGPROXY_CACHE_S3_REGION
  value: {{ . | quote }}
{{- end }}
{{- with $c.s3.endpoint }}
- name: IMGPROXY_CACHE_S3_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- else if eq $c.use "gcs" }}
- name: IMGPROXY_CACHE_BUCKET
  value: {{ required "sharedCache.gcs.bucket is required when sharedCache.use is gcs" $c.gcs.bucket | quote }}
{{- with $c.gcs.endpoint }}
- name: IMGPROXY_CACHE_GCS_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- else if eq $c.use "abs" }}
- name: IMGPROXY_CACHE_ABS_NAME
  value: {{ required "sharedCache.abs.account is required when sharedCache.use is abs" $c.abs.account | quote }}
- name: IMGPROXY_CACHE_BUCKET
  value: {{ required "sharedCache.abs.container is required when sharedCache.use is abs" $c.abs.container | quote }}
{{- with $c.abs.endpoint }}
- name: IMGPROXY_CACHE_ABS_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- else }}
- name: VIPSGATE_CACHE_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ required "sharedCache.redis.existingSecret is required when sharedCache.use is redis" $c.redis.existingSecret }}
      key: {{ $c.redis.secretKey }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Claim of the fs volume: sharedCache.fs.existingClaim, or the one this chart renders.
*/}}
{{- define "vipsgate.sharedCacheClaim" -}}
{{- default (printf "%s-cache" (include "vipsgate.fullname" .)) .Values.sharedCache.fs.existingClaim }}
{{- end }}
