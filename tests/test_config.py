"""config.toml: defaults, the documented example, and one-line errors for broken files."""

from __future__ import annotations

from pathlib import Path

import pytest

from heady_agent.config import ConfigError, load_agent_config
from heady_tui.config import Config, Paths, load_config

ROOT = Path(__file__).resolve().parent.parent


def _paths(tmp_path: Path, text: str | None) -> Paths:
    cfg = tmp_path / "config.toml"
    if text is not None:
        cfg.write_text(text)
    return Paths(config_file=cfg, data_dir=tmp_path / "data")


def test_missing_default_config_means_defaults(tmp_path):
    config = load_config(_paths(tmp_path, None))
    assert config.nodes == []
    assert config.detector.task_queue_depth.critical == 1000
    assert config.rebalance.auto_activate is False


def test_missing_explicit_config_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(_paths(tmp_path, None), required=True)


def test_example_config_documents_every_section_and_parses():
    paths = Paths(config_file=ROOT / "config.example.toml", data_dir=ROOT)
    config = load_config(paths, required=True)
    text = (ROOT / "config.example.toml").read_text()
    for section in Config.model_fields:
        assert f"[{section}" in text or f"[[{section}" in text, section
    assert config.nodes and config.agent.managed


def test_every_config_key_appears_in_the_example():
    text = (ROOT / "config.example.toml").read_text()

    def keys(model) -> set[str]:
        found = set()
        for name, field in model.model_fields.items():
            found.add(name)
            annotation = field.annotation
            inner = getattr(annotation, "__args__", None) or (annotation,)
            for candidate in inner:
                if isinstance(candidate, type) and hasattr(candidate, "model_fields"):
                    found |= keys(candidate)
        return found

    missing = sorted(k for k in keys(Config) if k not in text)
    assert missing == []


def test_invalid_toml_names_the_file_in_one_line(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(_paths(tmp_path, "[detector\nfor_seconds = 3"))
    assert str(tmp_path / "config.toml") in str(err.value)
    assert "\n" not in str(err.value)


def test_critical_below_threshold_is_refused(tmp_path):
    text = "[detector.error_rate]\nthreshold = 0.2\ncritical = 0.1\n"
    with pytest.raises(ConfigError, match="detector.error_rate"):
        load_config(_paths(tmp_path, text))


def test_negative_budget_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="daily_budget_usd"):
        load_config(_paths(tmp_path, "[cost]\ndaily_budget_usd = -5\n"))


def test_unknown_strategy_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="unknown strategy 'reboot_everything'"):
        load_config(_paths(tmp_path, '[healing]\nauto_dispatch = ["reboot_everything"]\n'))


def test_unknown_key_is_refused_with_its_name(tmp_path):
    with pytest.raises(ConfigError, match="refresh_rate"):
        load_config(_paths(tmp_path, "[ui]\nrefresh_rate = 4\n"))


def test_duplicate_node_names_are_refused(tmp_path):
    text = '[[nodes]]\nname = "a"\nurl = "ws://h:1/ws"\n[[nodes]]\nname = "a"\nurl = "ws://h:2/ws"\n'
    with pytest.raises(ConfigError, match="unique"):
        load_config(_paths(tmp_path, text))


def test_node_url_must_be_websocket(tmp_path):
    with pytest.raises(ConfigError, match="url"):
        load_config(_paths(tmp_path, '[[nodes]]\nname = "a"\nurl = "http://h/ws"\n'))


def test_node_token_env_that_is_unset_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("HEADY_TEST_UNSET", raising=False)
    config = load_config(_paths(tmp_path, '[[nodes]]\nname = "a"\nurl = "ws://h:1/ws"\ntoken_env = "HEADY_TEST_UNSET"\n'))
    with pytest.raises(ConfigError, match=r"\$HEADY_TEST_UNSET is not set"):
        config.nodes[0].resolve_token()


def test_heady_config_environment_variable_is_honoured(tmp_path, monkeypatch):
    cfg = tmp_path / "elsewhere.toml"
    cfg.write_text("[ui]\ntheme = \"light\"\n")
    monkeypatch.setenv("HEADY_CONFIG", str(cfg))
    assert load_config(Paths.resolve()).ui.theme == "light"


def test_xdg_data_home_isolates_the_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert Paths.resolve().data_dir == tmp_path / "xdg" / "heady"


def test_agent_token_comes_from_its_environment_variable(tmp_path, monkeypatch):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[agent]\nlisten = "127.0.0.1:0"\n')
    monkeypatch.setenv("HEADY_AGENT_TOKEN", "s3cret")
    agent, _ = load_agent_config(str(cfg))
    assert agent.resolve_token() == "s3cret"


def test_agent_unknown_source_is_refused(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[agent]\nsources = ["cursor"]\n')
    with pytest.raises(ConfigError, match="agent.sources"):
        load_agent_config(str(cfg))


def test_agent_tls_needs_cert_and_key_together(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[agent]\ntls_cert = "/x.pem"\n')
    with pytest.raises(ConfigError, match="tls_cert and tls_key"):
        load_agent_config(str(cfg))
