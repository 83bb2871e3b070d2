"""Django template tags and Jinja2 helpers from ``proxy.contrib``, in real template engines."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

from conftest import TEST_KEY, TEST_SALT
from imagegen import jpeg, load
from vipsgate.contrib import parse_size
from vipsgate.options import Gravity, ProcessingOptions
from vipsgate.paths import parse_path, split_signature
from vipsgate.signing import Signer
from vipsgate.urlbuilder import UrlBuilder

SIGNER = Signer.from_hex([TEST_KEY], [TEST_SALT])
BASE = "https://img.example.com"
VIPSGATE = {"BASE_URL": BASE, "KEY": TEST_KEY, "SALT": TEST_SALT}


def parsed(url: str, base: str = BASE):
    """Verify the signature of ``url`` and return the server's parse of it."""
    signature, path = split_signature(url.removeprefix(base))
    assert SIGNER.verify(signature, path)
    return parse_path(path)


@pytest.mark.parametrize(("size", "expected"), [
    ("300x200", (300, 200)), ("300x", (300, 0)), ("x200", (0, 200)), ("300", (300, 0)),
    (300, (300, 0)), ((30, None), (30, 0)), (None, (0, 0)),
])
def test_parse_size(size, expected):
    assert parse_size(size) == expected


# --- Django ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def django_engine():
    """A real Django template engine with ``proxy.contrib.django`` installed.

    Settings can be configured once per process: configure them only if nobody has,
    without logging set-up, and change ``VIPSGATE`` per test with ``override_settings``.
    """
    django = pytest.importorskip("django")
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            INSTALLED_APPS=["django.contrib.contenttypes", "vipsgate.contrib.django"],
            TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates"}],
            DATABASES={}, LOGGING_CONFIG=None, USE_TZ=True)
        django.setup()
    elif "vipsgate.contrib.django" not in settings.INSTALLED_APPS:
        pytest.skip("Django is configured elsewhere without proxy.contrib.django")
    from django.template import engines
    return engines["django"]


@pytest.fixture
def vipsgate_settings(django_engine):
    from django.test.utils import override_settings
    with override_settings(VIPSGATE=dict(VIPSGATE)):
        yield django_engine


@pytest.fixture(scope="module")
def photo_model(django_engine):
    from django.db import models

    class Photo(models.Model):
        image = models.ImageField(upload_to="photos")

        class Meta:
            app_label = "vipsgate"

    return Photo


def render(engine, text: str, **context) -> str:
    return engine.from_string("{% load vipsgate %}" + text).render(context)


class Photo:
    """What the tag reads from an ``ImageFieldFile``: url, width, height."""

    def __init__(self, url: str, width: int, height: int) -> None:
        self.url, self.width, self.height = url, width, height


def test_django_block_tag_binds_url_and_size(vipsgate_settings):
    out = render(vipsgate_settings,
                 '{% image_url photo "300x200" crop="center" quality=q as im %}'
                 '{{ im.url }}|{{ im.width }}x{{ im.height }}|{{ im|resolution:"2x" }}'
                 '{% endimage_url %}[{{ im }}]',
                 photo=Photo("https://example.com/cat.jpg", 1600, 1200), q=70)
    url, size, retina, after = html.unescape(out).replace("[", "|").split("|")
    assert size == "300x200"
    assert after == "]"  # the name is bound only inside the block
    one = parsed(url)
    assert one.source == "https://example.com/cat.jpg"
    assert one.options == ProcessingOptions(resizing_type="fill", width=300, height=200,
                                            quality=70)
    assert parsed(retina).options.dpr == 2


def test_django_inline_tag_prints_an_escaped_url(vipsgate_settings):
    from django.test.utils import override_settings
    source = "https://example.com/a&b.jpg"
    with override_settings(VIPSGATE={**VIPSGATE, "ENCODE": "plain"}):
        out = render(vipsgate_settings, '<img src="{% image_url src "x120" gravity="smart" %}">',
                     src=source)
    assert "&amp;" in out and "a&b" not in out
    url = html.unescape(out)[len('<img src="'):-2]
    result = parsed(url)
    assert (result.source, result.options.height, result.options.gravity) == (
        source, 120, Gravity("sm"))


def test_django_settings_fall_back_to_the_environment(django_engine, monkeypatch):
    from django.test.utils import override_settings
    monkeypatch.setenv("VIPSGATE_BASE_URL", "https://env.example")
    monkeypatch.setenv("IMGPROXY_KEY", TEST_KEY)
    monkeypatch.setenv("IMGPROXY_SALT", TEST_SALT)
    with override_settings(VIPSGATE={}):
        out = render(django_engine, '{% image_url "s3://b/k.jpg" "50x50" %}')
    assert parsed(out, "https://env.example").options.width == 50


def test_django_empty_source_and_syntax_errors(vipsgate_settings):
    from django.template import TemplateSyntaxError
    out = render(vipsgate_settings,
                 '{% image_url photo "10x10" as im %}<img src="{{ im.url }}">{% empty %}none'
                 '{% endimage_url %}[{% image_url photo %}]({% image_url photo as im %}'
                 '<img src="{{ im.url }}">{% endimage_url %})', photo="")
    assert out == "none[]()"
    with pytest.raises(TemplateSyntaxError):
        render(vipsgate_settings, "{% image_url %}")
    with pytest.raises(TemplateSyntaxError):
        render(vipsgate_settings, '{% image_url a "1x1" q=1 "extra" %}')


def test_django_picture_tag(vipsgate_settings):
    out = render(vipsgate_settings,
                 '{% picture photo "300x200" alt=title crop="smart" formats="webp,jpeg" %}',
                 photo=Photo("https://example.com/cat.jpg", 1600, 1200),
                 title='Tom & "Jerry"')
    assert out.startswith("<picture>") and out.count("<source ") == 1
    assert 'alt="Tom &amp; &quot;Jerry&quot;"' in out
    assert 'width="300" height="200"' in out and 'type="image/webp"' in out


async def test_django_image_field_url_is_served(vipsgate_settings, photo_model, images,
                                                make_client):
    """A real ``ImageField`` (size read by Django) -> tag -> the server -> that size."""
    from django.core.files.storage import FileSystemStorage
    from django.test.utils import override_settings

    media = images / "media"
    (media / "photos").mkdir(parents=True)
    (media / "photos" / "cat 1.jpg").write_bytes(jpeg(800, 600))
    field = photo_model._meta.get_field("image")
    field.storage = FileSystemStorage(location=str(media), base_url="/media/")
    photo = photo_model(image="photos/cat 1.jpg")
    with override_settings(VIPSGATE={"BASE_URL": "", "KEY": TEST_KEY, "SALT": TEST_SALT}):
        out = render(vipsgate_settings,
                     '{% image_url photo.image "240x" as im %}{{ im.url }} {{ im.width }} '
                     '{{ im.height }}{% endimage_url %}', photo=photo)
    url, width, height = html.unescape(out).split(" ")
    assert (width, height) == ("240", "180")
    client = await make_client(IMGPROXY_BASE_URL="local://")  # "/media/..." -> local:///media/
    response = await client.get(url)
    assert response.status == 200, await response.text()
    image = load(await response.read())
    assert (image.width, image.height) == (240, 180)


README_TEMPLATE = (
    '{% image_url article.photo "600x400" crop="center" quality=75 as im %}'
    '<img src="{{ im.url }}" srcset="{{ im|resolution:"2x" }} 2x, {{ im|resolution:"3x" }} 3x"'
    ' width="{{ im.width }}" height="{{ im.height }}" alt="{{ article.title }}">'
    '{% endimage_url %}'
    '<img src="{% image_url "local:///logo.png" "x64" %}">'
    '{% picture article.photo "600x400" alt=article.title crop="smart" %}')


def test_django_empty_image_field_renders_no_empty_src(vipsgate_settings, photo_model):
    """The README's template with an article that has no photo: no src="" and no srcset
    made of bare descriptors, only the logo."""
    article = {"photo": photo_model().image, "title": "No photo"}
    out = render(vipsgate_settings, README_TEMPLATE, article=article)
    assert 'src=""' not in out and 'srcset=" 2x' not in out and "<picture>" not in out
    assert out.count("<img ") == 1 and parsed(html.unescape(out)[10:-2]).options.height == 64


async def test_django_relative_media_and_other_sources_on_one_server(
        vipsgate_settings, photo_model, images, make_client, aiohttp_server):
    """``MEDIA_BASE_URL`` goes in front of relative sources only: an ImageField under
    /media/ and a local:/// logo in one template, both served by one server (which has
    no IMGPROXY_BASE_URL, which would prefix the logo's source too)."""
    from aiohttp import web
    from django.core.files.storage import FileSystemStorage
    from django.test.utils import override_settings

    site = images.parent / "site"
    (site / "media" / "photos").mkdir(parents=True)
    (site / "media" / "photos" / "cat.jpg").write_bytes(jpeg(800, 600))
    (images / "logo.png").write_bytes(jpeg(128, 128))
    origin = web.Application()
    origin.router.add_static("/media/", site / "media")
    media_site = await aiohttp_server(origin, host="127.0.0.1")
    field = photo_model._meta.get_field("image")
    field.storage = FileSystemStorage(location=str(site / "media"), base_url="/media/")
    article = {"photo": photo_model(image="photos/cat.jpg"), "title": "A cat"}
    article["photo"] = article["photo"].image
    media_base = str(media_site.make_url("")).rstrip("/")
    with override_settings(VIPSGATE={"BASE_URL": "", "KEY": TEST_KEY, "SALT": TEST_SALT,
                                     "MEDIA_BASE_URL": media_base}):
        out = html.unescape(render(vipsgate_settings, README_TEMPLATE, article=article))
    urls = [u.split(" ")[0] for u in re.findall(r'(?:src|srcset)="([^"]+)"', out)]
    urls += [part.strip().split(" ")[0] for u in re.findall(r'srcset="([^"]+)"', out)
             for part in u.split(",")]
    assert len(set(urls)) >= 6
    assert parsed(urls[0], "").source == f"{media_base}/media/photos/cat.jpg"
    client = await make_client(IMGPROXY_ALLOW_LOOPBACK_SOURCE_ADDRESSES="true")
    for url in set(urls):
        response = await client.get(url)
        assert response.status == 200, (url, await response.text())
        assert load(await response.read()).width > 0


def test_builder_configuration_errors_name_the_argument():
    from vipsgate.errors import BuilderConfigError
    cases = [
        (dict(key=TEST_KEY), "salt", "missing"),
        (dict(salt=TEST_SALT), "key", "missing"),
        ({}, "key", "insecure=True"),
        (dict(key="not-hex", salt=TEST_SALT), "key", "must be hex"),
        (dict(key=TEST_KEY, salt="zz"), "salt", "must be hex"),
        (dict(key=TEST_KEY, salt=TEST_SALT, insecure=True), "insecure", "no key"),
        (dict(key=TEST_KEY, salt=TEST_SALT, signature_size="abc"), "signature_size", "1..32"),
        (dict(key=TEST_KEY, salt=TEST_SALT, media_base_url="/media"), "media_base_url",
         "absolute"),
    ]
    for kwargs, option, said in cases:
        with pytest.raises(BuilderConfigError) as info:
            UrlBuilder("https://i.example", **kwargs)
        assert info.value.option == option and said in str(info.value), (kwargs, info.value)
    assert UrlBuilder("https://i", insecure=True).url("s3://b/k.jpg", 10).url.startswith(
        "https://i/insecure/")


def test_builder_from_env_names_the_variable():
    from vipsgate.errors import BuilderConfigError
    with pytest.raises(BuilderConfigError, match=r"^IMGPROXY_SALT: missing"):
        UrlBuilder.from_env({"IMGPROXY_KEY": TEST_KEY})
    with pytest.raises(BuilderConfigError, match=r"^IMGPROXY_KEY: must be hex"):
        UrlBuilder.from_env({"IMGPROXY_KEY": "xyz", "IMGPROXY_SALT": TEST_SALT})
    builder = UrlBuilder.from_env({"VIPSGATE_URL_INSECURE": "1",
                                   "VIPSGATE_MEDIA_BASE_URL": "https://www.example.com/"})
    im = builder.url("/media/a.jpg", 10)
    assert im.source == "https://www.example.com/media/a.jpg"
    assert builder.url("local:///a.jpg", 10).source == "local:///a.jpg"
    assert builder.url("//cdn.example/a.jpg", 10).source == "//cdn.example/a.jpg"


def test_django_settings_errors_name_the_setting(django_engine, monkeypatch):
    from django.core.exceptions import ImproperlyConfigured
    from django.test.utils import override_settings

    from vipsgate.contrib.django.conf import get_builder
    for name in ("IMGPROXY_KEY", "IMGPROXY_SALT", "VIPSGATE_URL_INSECURE"):
        monkeypatch.delenv(name, raising=False)
    with override_settings(VIPSGATE={"KEY": "0xnothex", "SALT": TEST_SALT}), \
            pytest.raises(ImproperlyConfigured, match=r'VIPSGATE\["KEY"\]: must be hex'):
        get_builder()
    with override_settings(VIPSGATE={"KEY": TEST_KEY}), \
            pytest.raises(ImproperlyConfigured,
                          match=r'VIPSGATE\["SALT"\] \(or IMGPROXY_SALT\): missing'):
        get_builder()
    monkeypatch.setenv("IMGPROXY_SALT", "nothex")
    with override_settings(VIPSGATE={"KEY": TEST_KEY}), \
            pytest.raises(ImproperlyConfigured, match="IMGPROXY_SALT: must be hex"):
        get_builder()
    monkeypatch.delenv("IMGPROXY_SALT")
    with override_settings(VIPSGATE={"INSECURE": True}):
        assert get_builder().sign("/x") == "insecure"


def test_django_system_checks(django_engine, monkeypatch):
    from django.core import checks
    from django.test.utils import override_settings
    for name in ("IMGPROXY_KEY", "IMGPROXY_SALT", "VIPSGATE_MEDIA_BASE_URL"):
        monkeypatch.delenv(name, raising=False)

    def found(**settings) -> dict[str, str]:  # type: ignore[no-untyped-def]
        with override_settings(**settings):
            return {m.id: m.msg for m in checks.run_checks() if m.id.startswith("vipsgate.")}

    assert found(VIPSGATE=dict(VIPSGATE), MEDIA_URL="https://media.example/") == {}
    assert found(VIPSGATE="oops") == {"vipsgate.E001": "VIPSGATE must be a dict"}
    bad = found(VIPSGATE={**VIPSGATE, "KEY": "nothex", "SLAT": "x"},
                MEDIA_URL="https://media.example/")
    assert bad["vipsgate.E002"].startswith('VIPSGATE["KEY"]: must be hex')
    assert bad["vipsgate.W001"] == 'VIPSGATE["SLAT"] is not a vipsgate setting and is ignored'
    missing = found(VIPSGATE={"BASE_URL": BASE}, MEDIA_URL="/media/")
    assert missing["vipsgate.E002"].startswith('VIPSGATE["KEY"] (or IMGPROXY_KEY): missing')
    assert "MEDIA_URL (/media/) is relative" in missing["vipsgate.W002"]
    assert "vipsgate.W002" not in found(VIPSGATE={**VIPSGATE, "MEDIA_BASE_URL": BASE},
                                        MEDIA_URL="/media/")


# --- Jinja2 ----------------------------------------------------------------------------------

@pytest.fixture
def jinja_env():
    jinja2 = pytest.importorskip("jinja2")
    from vipsgate.contrib.jinja2 import install
    return install(jinja2.Environment(autoescape=True), UrlBuilder(BASE, TEST_KEY, TEST_SALT))


def test_jinja_global_filters_and_size(jinja_env):
    out = jinja_env.from_string(
        '{% set im = image_url(src, "300x200", crop="center", source_size=(800, 600)) %}'
        "{{ im }}|{{ im.width }}x{{ im.height }}|{{ im|resolution('2x') }}|"
        "{{ src|image_url('x100') }}|{{ im|srcset }}").render(src="s3://b/cat.jpg")
    url, size, retina, by_filter, srcset = html.unescape(out).split("|")
    assert size == "300x200"
    assert parsed(url).options == ProcessingOptions(resizing_type="fill", width=300, height=200)
    assert parsed(retina).options.dpr == 2
    assert parsed(by_filter).options.height == 100
    assert [c.rsplit(" ", 1)[1] for c in srcset.split(", ")] == ["1x", "2x", "3x"]


def test_jinja_picture_is_markup_and_escaped(jinja_env):
    out = jinja_env.from_string('{{ picture(src, "300x200", alt=alt, source_size="600x400") }}'
                                ).render(src="s3://b/cat.jpg", alt="<b>cat</b>")
    assert out.startswith("<picture>") and "&lt;b&gt;cat&lt;/b&gt;" in out
    assert out.count("<source ") == 2 and 'width="300" height="200"' in out


def test_jinja_empty_source_prints_nothing(jinja_env):
    out = jinja_env.from_string(
        '{% set im = image_url(src, "300x200") %}{% if im %}<img src="{{ im }}">{% endif %}'
        '[{{ picture(src, "300x200") }}][{{ im|srcset }}][{{ im|resolution("2x") }}]'
    ).render(src="")
    assert out == "[][][]"


def test_jinja_extension_reads_the_environment(monkeypatch, tmp_path: Path):
    jinja2 = pytest.importorskip("jinja2")
    monkeypatch.setenv("VIPSGATE_BASE_URL", "https://env.example/")
    monkeypatch.setenv("IMGPROXY_KEY", TEST_KEY)
    monkeypatch.setenv("IMGPROXY_SALT", TEST_SALT)
    monkeypatch.setenv("VIPSGATE_URL_ENCODING", "plain")
    env = jinja2.Environment(extensions=["vipsgate.contrib.jinja2.VipsgateExtension"])
    out = env.from_string('{{ image_url("local:///a b.jpg", "64x64") }}').render()
    assert out.startswith("https://env.example/") and "/plain/local:///a%20b.jpg" in out
    assert parsed(out, "https://env.example").options.width == 64
