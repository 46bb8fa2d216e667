"""Export a trained policy for deployment: an ONNX model and its metadata JSON.

    python export.py checkpoint=outputs/DATE/TIME/checkpoints/best.zip
    python export.py checkpoint=outputs/DATE/TIME/checkpoints/best.pt    # trainer=torchrl's checkpoint
    python export.py checkpoint=PATH out=deploy/ name=hangzhou max_green_s=90
    python export.py checkpoint=PATH engine.device=cuda   # the check's simulator and policy on the GPU
    python export.py checkpoint=PATH overwrite=true       # replace an existing export (else an error)

Then run it without torch: ``python -m agents.deploy.service serve --model deploy/hangzhou.onnx``.
Before putting either file in place the script replays ``check.seconds`` of simulated decisions on
held-out demand and compares the ONNX model's actions with the torch policy's; any difference
fails the export (exit status 1) and writes nothing (an export already there stays);
``check.seconds=0`` skips it, saying so; a bad checkpoint, scenario or config value prints one
line and exits 2 (``HYDRA_FULL_ERROR=1`` for the traceback).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import hydra
import onnxruntime
from omegaconf import DictConfig, OmegaConf

from agents.deploy.config import ExportCheck, ExportConfig, ExportEngine  # registers "export_schema"
from agents.deploy.simulated import record_decisions
from agents.deploy.export import export_policy
from agents.deploy.export_files import check_name_value
from agents.deploy.model_file import recorded_feed
from agents.ppo.null_nodes import check_command_line
from agents.ppo.value_checks import check_keys
from agents.ppo.policy import controller_for_checkpoint
from agents.ppo.run_messages import say, status_log
from envs.engine import Simulator
from envs.engine.state import EngineParams
from envs.errors import ConfigError, exit_on_error
from envs.scenario import load_scenario
from envs.scenario.network import check_device
from envs.scenario.splits import DemandSpec, sample_trips


class Disagreement(Exception):
    """The ONNX model's actions differ from the torch policy's (export.py exits 1)."""


def check_against_torch(onnx_path: Path, checkpoint: str, seconds: int, copies: int, data_dir,
                        device: str = "cpu") -> dict:
    """ONNX vs torch deterministic actions on decisions recorded from the simulator (simulator
    and torch policy on `device`; the readings come back to the host for onnxruntime)."""
    policy = controller_for_checkpoint(checkpoint, device=device)  # SB3 .zip or TorchRL .pt
    meta_cfg = policy.meta["config"]["scenario"]
    scenario = load_scenario(meta_cfg["name"], seed=meta_cfg.get("seed", 0),
                             data_dir=data_dir if data_dir is not None else meta_cfg.get("data_dir"), device=device)
    try:
        trips = [sample_trips(scenario, DemandSpec("poisson"), "eval", k, horizon=seconds) for k in range(copies)]
    except ConfigError as error:  # named by the demand spec's `scale`, which export.py has no key for
        raise ConfigError("<config>", "check.seconds", seconds, f"too short to check the export: {error.reason} "
                          "(nothing was written; check.seconds=0 skips the check)") from None
    sim = Simulator(scenario.network, scenario.demand(trips=trips), EngineParams(**policy.meta["env"]["engine"]))
    policy.reset(sim)
    rows = record_decisions(policy, sim, seconds)
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    actions = session.run(["action"], recorded_feed(session, rows))[0]
    return {"decisions": int(actions.size), "identical": int((actions == rows["action"]).sum())}


def export(cfg: DictConfig) -> None:
    """Export ``cfg.checkpoint``, report both files, check the ONNX model against torch."""
    check_keys(cfg, ExportConfig)  # +max_gren_s=90 (Hydra's own hint for a typo) exported the default
    if OmegaConf.is_missing(cfg, "checkpoint"):  # was OmegaConf's MissingMandatoryValue traceback
        raise ConfigError("<config>", "checkpoint", None, "required: the train.py checkpoint to export "
                                                          "(checkpoint=outputs/DATE/TIME/checkpoints/last.zip)")
    if cfg.name is not None:  # before any work: name=../x wrote beside out, not in it
        check_name_value(cfg.name)
    check_device(cfg.engine.device, "<config>", "engine.device")  # before any work; never a silent CPU run
    for key, least in (("check.seconds", 0), ("check.copies", 1)):  # 0 seconds = no check; negative is a typo
        if int(OmegaConf.select(cfg, key)) < least:
            raise ConfigError("<config>", key, OmegaConf.select(cfg, key), f"must be >= {least}")
    checkpoint = Path(cfg.checkpoint)
    out = Path(cfg.out) if cfg.out else checkpoint.parent
    seconds, result = int(cfg.check.seconds), {}
    if seconds == 0:  # the check's own settings would be ignored: refused, as every unread setting
        for key, default in (("check.copies", ExportCheck.copies), ("engine.device", ExportEngine.device)):
            if OmegaConf.select(cfg, key) != default:
                raise ConfigError("<config>", key, OmegaConf.select(cfg, key),
                                  "nothing reads it: check.seconds=0 skips the check it is for")

    def verify(model: Path) -> None:  # on the model before it is put in place: a failed check writes nothing
        if seconds > 0:
            result.update(check_against_torch(model, str(checkpoint), seconds, int(cfg.check.copies),
                                              cfg.data_dir, device=str(cfg.engine.device)))
            if result["identical"] != result["decisions"]:
                raise Disagreement()

    try:
        onnx_path, meta_path = export_policy(
            checkpoint, out, name=cfg.name, opset=int(cfg.opset),
            max_green_s=float(cfg.max_green_s),
            max_red_s=None if cfg.max_red_s is None else float(cfg.max_red_s),
            data_dir=cfg.data_dir, overwrite=bool(cfg.overwrite), verify=verify,
        )
    except Disagreement:
        say(f"export check FAILED: ONNX and torch disagree on {result['decisions'] - result['identical']:,} "
            f"of {result['decisions']:,} recorded decisions; nothing was written", file=sys.stderr)
        sys.exit(1)
    meta = json.loads(meta_path.read_text())
    say(f"wrote {onnx_path} ({onnx_path.stat().st_size:,} bytes, opset {meta['model']['opset']}, "
        f"sha256 {meta['model']['sha256'][:16]}…) and {meta_path}")
    say(f"  {len(meta['intersections'])} intersections, observation "
        f"{[f['name'] for f in meta['observation']['features']]}, timing {meta['timing']}")
    if seconds > 0:
        say(f"  check: {result['identical']:,} of {result['decisions']:,} recorded decisions identical "
            "between ONNX and torch")
    else:  # check.seconds=0 is allowed (configs say "0 = skip"), but never silently
        say("  check: SKIPPED (check.seconds=0): the ONNX model was not compared with the torch policy")
    say(f"serve it: python -m agents.deploy.service serve --model {onnx_path}")


def check_name_argument(argv: list[str]) -> None:
    """A ``name=`` on the command line checked as `export` checks it, before Hydra makes the run folder (a
    refused name left one behind holding only Hydra's files). Read as Hydra reads it (quotes, ``null``); a
    sweep, an interpolation or a name from elsewhere is checked when the config is composed, in `export`."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    for item in argv:
        if item.lstrip("+~").partition("=")[0] != "name" or item.startswith("~"):
            continue
        try:
            value = parser.parse_overrides([item])[0].value()
        except OverrideParseException:  # Hydra's own error says what is wrong, as for any override
            continue
        if isinstance(value, str) and "${" not in value:
            check_name_value(value)


@hydra.main(version_base=None, config_path="configs", config_name="export")
def main(cfg: DictConfig) -> None:
    # a GridlightError: one line on stderr, exit status 2; what export says also goes into RUN/export.log
    with exit_on_error(), status_log(logging.getLogger().handlers):
        export(cfg)


if __name__ == "__main__":
    with exit_on_error():  # a run directory that is a file or under one: Hydra's traceback otherwise
        check_command_line(sys.argv[1:], "export")
        check_name_argument(sys.argv[1:])
    main()
