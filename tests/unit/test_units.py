"""driver/units.py: sizes read as Docker reads them, by every option and setting that takes one."""

from __future__ import annotations

import pytest

from memberlog.driver.options import OptionError, parse
from memberlog.driver.settings import SettingError, from_env, parse_size
from memberlog.driver.units import parse_bytes

KIB, MIB, GIB, TIB, PIB = (1 << (10 * n) for n in range(1, 6))
DEST = {"group": "/app/pg"}


# Docker's own cases for units.RAMInBytes (go-units size_test.go), and the ones it refuses.
@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("32", 32), ("32b", 32), ("32B", 32), ("32k", 32 * KIB), ("32K", 32 * KIB),
        ("32kb", 32 * KIB), ("32Kb", 32 * KIB), ("32Kib", 32 * KIB), ("32KIB", 32 * KIB),
        ("32Mb", 32 * MIB), ("32Gb", 32 * GIB), ("32Tb", 32 * TIB), ("32Pb", 32 * PIB),
        ("32PB", 32 * PIB), ("32P", 32 * PIB), ("32.3", 32), ("32.3 mb", int(32.3 * MIB)),
        ("0.3MB", int(0.3 * MIB)), ("32.5 B", 32), ("50 MB", 50 * MIB), ("1GiB", GIB),
        ("0", 0), ("1073741824", GIB),
    ],
)  # fmt: skip
def test_sizes_read_as_dockers_ram_in_bytes(text, size):
    assert parse_bytes(text) == size


@pytest.mark.parametrize(
    "text",
    ["", "hello", "-32", ".3kB", "32m b", "32bm", "32  MB", "1.2.3k", "32i", "32ki", "32x",
     "²", "١٢", "1e3", "32 ", "0x10"],
)  # fmt: skip
def test_what_docker_refuses_is_refused(text):
    if text == "32 ":  # white space around a size is ignored (Docker's parser refuses it)
        assert parse_bytes(text) == 32
        return
    with pytest.raises(ValueError):
        parse_bytes(text)


def test_large_sizes_are_exact():
    assert parse_bytes("9007199254740993") == 9007199254740993  # past float's 2**53
    assert parse_bytes("1.5p") == 3 * PIB // 2


# --- the callers: one grammar, each its own bounds and error text ---------------------------
def test_plugin_settings_take_the_shared_grammar():
    assert parse_size("SPOOL_MAX_BYTES", "1.5GiB") == 3 * GIB // 2
    assert parse_size("SPOOL_MAX_BYTES", "2 TB") == 2 * TIB
    assert from_env({"SPOOL_MAX_BYTES": "64m", "KEEP_MAX_BYTES": "0"}).spool_max_bytes == 64 * MIB


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SPOOL_MAX_BYTES": "lots"}, "SPOOL_MAX_BYTES='lots': expected a size"),
        ({"SPOOL_MAX_BYTES": "512k"}, "SPOOL_MAX_BYTES='512k': must be at least 1MB"),
        ({"SPOOL_MAX_BYTES": "0"}, "SPOOL_MAX_BYTES='0': must be at least 1MB"),
        ({"KEEP_MAX_BYTES": "1kb"}, "KEEP_MAX_BYTES='1kb': must be at least 1MB (or 0)"),
    ],
)
def test_a_bad_setting_names_itself(env, message):
    with pytest.raises(SettingError) as raised:
        from_env(env)
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("text", "size"),
    [("256KiB", 256 * KIB), ("262144b", 262_144), ("0.5m", None), (" 1k", 1024), ("1024 KB", None)],
)
def test_max_event_size_takes_the_shared_grammar_in_whole_bytes(text, size):
    if size is None:  # a fraction ("0.5m"), or above CloudWatch's event limit
        with pytest.raises(OptionError, match="max-event-size"):
            parse({**DEST, "max-event-size": text})
        return
    assert parse({**DEST, "max-event-size": text}).max_event_size == size


@pytest.mark.parametrize(
    ("text", "size"), [("20m", 20 * MIB), ("1.5g", 3 * GIB // 2), ("512KiB", 512 * KIB)]
)
def test_cache_max_size_takes_the_shared_grammar(text, size):
    cfg = parse({**DEST, "cache-max-size": text, "cache-max-file": "2"})
    assert cfg.keep_bytes == 2 * size


@pytest.mark.parametrize(
    ("text", "message"),
    [("lots", "expected a size"), ("0", "more than 0"), ("0.1b", "more than 0")],
)
def test_a_bad_cache_max_size_names_the_option(text, message):
    with pytest.raises(OptionError) as raised:
        parse({**DEST, "cache-max-size": text})
    assert f"log-opt cache-max-size={text!r}" in str(raised.value)
    assert message in str(raised.value)
