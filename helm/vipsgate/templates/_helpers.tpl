{{/*
Chart name, truncated to the 63 characters Kubernetes allows in names.
*/}}
{{- define "vipsgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: <release>-<chart>, or just <release> when the release
name already contains the chart name.
*/}}
{{- define "vipsgate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "vipsgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "vipsgate.labels" -}}
helm.sh/chart: {{ include "vipsgate.chart" . }}
{{ include "vipsgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels (immutable on a Deployment: never add to these).
*/}}
{{- define "vipsgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vipsgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
ServiceAccount name.
*/}}
{{- define "vipsgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "vipsgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Name of the Secret the pods load: existingSecret, or the one this chart renders.
*/}}
{{- define "vipsgate.secretName" -}}
{{- default (include "vipsgate.fullname" .) .Values.existingSecret }}
{{- end }}

{{/*
Image reference.
*/}}
{{- define "vipsgate.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}

{{/*
Stringify an environment value. Helm parses YAML numbers as float64, which
would print 134217728 as 1.34217728e+08; integral numbers are printed as
integers instead.
*/}}
{{- define "vipsgate.envValue" -}}
{{- if kindIs "float64" . }}
{{- if eq (float64 (int64 .)) . }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- else }}
{{- . }}
{{- end }}
{{- end }}

{{/*
Refuse to render without a signing key: each pod would start in development mode with
its own random key, so a signed URL would fail on every pod but one at most. devMode:
true renders anyway (a throwaway trial); existingSecret is trusted to hold the key.
*/}}
{{- define "vipsgate.requireKey" -}}
{{- $secrets := .Values.secrets | default dict }}
{{- if not (or .Values.devMode .Values.existingSecret (and $secrets.IMGPROXY_KEY $secrets.IMGPROXY_SALT)) }}
{{- fail "vipsgate: set secrets.IMGPROXY_KEY and secrets.IMGPROXY_SALT (hex, e.g. openssl rand -hex 32) or existingSecret; without a key every pod invents its own random key and signed URLs fail. Set devMode=true to render anyway (a trial)" }}
{{- end }}
{{- end }}
