"""GLib details pyvips does not cover, checked in a child process (a failure aborts it)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from conftest import ROOT

NESTED = textwrap.dedent("""
    import logging
    from vipsgate import native
    from vipsgate.processing import vips
    vips.init()  # installs the handlers, as the worker pool does
    glib = native.open_library("libvips", "vips", "g_log")

    class Nested(logging.Handler):
        # what a GC finaliser inside pyvips' log handler can do: libvips logs again
        def emit(self, record):
            if "outer" in record.getMessage():
                glib.g_log(b"VIPS", 1 << 4, b"%s", b"inner")

    logging.getLogger("pyvips").addHandler(Nested())
    glib.g_log(b"VIPS", 1 << 4, b"%s", b"outer")
    print("survived")
""")


def test_a_libvips_message_inside_the_log_handler_does_not_abort():
    """GLib makes a log message emitted inside a log handler fatal by default (SIGABRT);
    vipsgate turns that off, so the nested message is printed and work goes on."""
    done = subprocess.run([sys.executable, "-c", NESTED], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "survived"
    assert "(recursed)" in done.stderr and "inner" in done.stderr
