"""Django template tags and Jinja2 helpers from ``proxy.contrib``, in real template engines."""

from __future__ import annotations

import html
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
                 '{% image_url photo "10x10" as im %}{% if im %}yes{% else %}none{% endif %}'
                 '{% endimage_url %}[{% image_url photo %}]', photo="")
    assert out == "none[]"
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
