"""The range checks of agents/ppo/value_checks.py on hand-made configs: NaN and infinity are
refused by every check, the open and closed ends of a range are where the message says, and
`check_keys` refuses a key the config does not read, naming its full path."""

from __future__ import annotations

import math

import pytest
from omegaconf import OmegaConf

from agents.ppo.value_checks import at_least, check_keys, in_range, plain, positive
from envs.errors import ConfigError
from envs.rl.env_config import EnvConfig
from tests.minimal_scenario import assert_names_everything


def refused(check, value, *args, **kwargs) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        check(OmegaConf.create({"agent": {"x": value}}), "agent.x", *args, **kwargs)
    assert_names_everything(caught.value, "<config>", "agent.x", value)
    return caught.value


def passes(check, value, *args, **kwargs) -> None:
    check(OmegaConf.create({"agent": {"x": value}}), "agent.x", *args, **kwargs)


def test_nan_fails_the_bound_itself_and_infinity_is_no_finite_number():
    assert refused(at_least, math.nan, 1).reason == "must be >= 1"  # NaN compares false: `value < 1` let it by
    assert refused(at_least, math.inf, 1).reason == "must be a finite number"
    assert refused(positive, math.nan).reason == "must be > 0"
    assert refused(positive, math.inf).reason == "must be a finite number"
    assert refused(positive, math.inf, or_null=True).reason == "must be a finite number"
    passes(positive, None, or_null=True)
    assert refused(in_range, math.nan, 0.0, 1.0).reason == "must be in [0, 1]"


def test_a_range_is_open_or_closed_at_the_ends_its_message_shows():
    assert refused(in_range, 0.0, 0.0, 1.0, low_open=True).reason == "must be in (0, 1]"
    passes(in_range, 1.0, 0.0, 1.0, low_open=True)
    passes(in_range, 0.0, 0.0, 1.0)
    passes(in_range, 1.0, 0.0, 1.0)
    assert refused(in_range, 1.5, 0.0, 1.0).reason == "must be in [0, 1]"


def test_check_keys_refuses_a_field_set_by_the_code_not_the_config_naming_its_full_path():
    with pytest.raises(ConfigError, match=r"unknown key; known: \[") as caught:
        check_keys(OmegaConf.create({"split": "eval"}), EnvConfig, "env.")  # env.split: the code sets it
    assert_names_everything(caught.value, "<config>", "env.split", "eval")
    assert "'split'" not in caught.value.reason


def test_plain_resolves_interpolations_for_messages():
    assert plain(OmegaConf.create({"a": "${b}", "b": 2})) == {"a": 2, "b": 2}
    assert plain(3) == 3
