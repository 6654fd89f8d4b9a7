"""Settings: flag > environment variable > config file > default, and clear errors for bad
keys and values."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tsq.config import OPTIONS, Settings
from tsq.errors import ConfigError

DOCS = ROOT / "docs" / "configuration.md"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for option in OPTIONS:
        monkeypatch.delenv(option.env, raising=False)
    monkeypatch.delenv("TSQ_CONFIG", raising=False)
    monkeypatch.delenv("TSQ_DATA_DIR", raising=False)


def test_defaults(tmp_path: Path) -> None:
    settings = Settings.load(tmp_path)
    assert (settings.host, settings.port, settings.workers) == ("127.0.0.1", 8080, 2)
    assert settings.max_body_bytes == 16 << 20 and settings.max_result_bytes == 1 << 20
    assert (settings.pipeline_limits.max_depth, settings.pipeline_limits.max_steps) == (8, 1000)
    assert (settings.log_level, settings.log_format) == ("info", "text")
    assert settings.database_url == f"sqlite:///{tmp_path / 'tsq.db'}"
    assert settings.config_file is None


def test_flag_beats_env_beats_file_beats_default(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tsq.toml").write_text(
        'workers = 3\nport = 9000\nlog_level = "debug"\nmax_body_mb = 2\n'
        'pipeline_max_depth = 5\ndatabase_url = "sqlite:////tmp/from-file.db"\n')
    monkeypatch.setenv("TSQ_WORKERS", "5")
    monkeypatch.setenv("TSQ_PORT", "9100")
    monkeypatch.setenv("TSQ_DATABASE_URL", "sqlite:////tmp/from-env.db")
    settings = Settings.load(tmp_path, flags={"workers": 7, "port": None})
    assert settings.config_file == tmp_path / "tsq.toml"
    assert settings.workers == 7  # flag
    assert settings.port == 9100  # environment (the flag was not given)
    assert settings.database_url == "sqlite:////tmp/from-env.db"
    assert settings.log_level == "debug" and settings.max_body_bytes == 2 << 20  # file
    assert settings.pipeline_limits.max_depth == 5 and settings.max_result_bytes == 1 << 20
    assert Settings.load(tmp_path, "sqlite:////tmp/flag.db").database_url == \
        "sqlite:////tmp/flag.db"


def test_config_flag_then_env_then_data_dir(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tsq.toml").write_text("workers = 3\n")
    (tmp_path / "env.toml").write_text("workers = 4\n")
    (tmp_path / "flag.toml").write_text("workers = 6\n")
    monkeypatch.setenv("TSQ_CONFIG", str(tmp_path / "env.toml"))
    assert Settings.load(tmp_path, config=tmp_path / "flag.toml").workers == 6
    assert Settings.load(tmp_path).workers == 4
    monkeypatch.delenv("TSQ_CONFIG")
    assert Settings.load(tmp_path).workers == 3


@pytest.mark.parametrize(("text", "message"), [
    ("wokers = 3\n", "{file}: unknown key 'wokers'; did you mean 'workers'? the keys are host, "),
    ('workers = "two"\n', "{file}: workers = 'two' is not valid; expected a whole number from 1 "
                          "to 256"),
    ("workers = true\n", "{file}: workers = True is not valid; expected a whole number from 1 "
                         "to 256"),
    ("workers = 0\n", "{file}: workers = 0 is out of range; expected a whole number from 1 to "
                      "256"),
    ('log_format = "xml"\n', "{file}: log_format = 'xml' is not valid; expected one of text, "
                             "json"),
    ("port = 8080.5\n", "{file}: port = 8080.5 is not valid; expected a whole number from 0 to "
                        "65535"),
    ("[server]\nport = 1\n", "{file}: unknown key 'server'"),
    ("workers = \n", "{file} is not valid TOML: Invalid value (at line 1, column 11)"),
])
def test_a_bad_file_names_the_file_key_and_what_is_expected(tmp_path: Path, text: str,
                                                            message: str) -> None:
    (tmp_path / "tsq.toml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        Settings.load(tmp_path)
    assert caught.value.message.startswith(message.format(file=tmp_path / "tsq.toml"))
    assert "\n" not in caught.value.message


def test_bad_env_and_flag_values_name_themselves(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TSQ_WORKERS", "many")
    with pytest.raises(ConfigError, match=r"^TSQ_WORKERS='many' is not valid; expected a whole "
                                          r"number from 1 to 256$"):
        Settings.load(tmp_path)
    monkeypatch.delenv("TSQ_WORKERS")
    with pytest.raises(ConfigError, match=r"^--log-level = 'loud' is not valid; expected one "
                                          r"of debug, info, warning, error$"):
        Settings.load(tmp_path, flags={"log_level": "loud"})
    with pytest.raises(ConfigError, match=r"the config file .*nope\.toml does not exist"):
        Settings.load(tmp_path, config=tmp_path / "nope.toml")


def test_the_docs_table_lists_every_option_as_it_is() -> None:
    rows = re.findall(r"^\| `(\w+)` \| `(--[\w-]+)` \| `(TSQ_\w+)` \| ([^|]+) \|", DOCS.read_text(),
                      re.MULTILINE)
    documented = {key: (flag, env, default.strip()) for key, flag, env, default in rows}
    assert set(documented) == {option.key for option in OPTIONS}
    for option in OPTIONS:
        flag, env, default = documented[option.key]
        assert (flag, env) == (option.flag, option.env)
        if option.default is not None:
            assert default.strip("`").strip('"') == str(option.default), option.key
