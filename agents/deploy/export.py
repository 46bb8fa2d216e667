"""Export a trained policy to ONNX plus a metadata JSON that a signal cabinet can run alone
(agents/deploy/runtime.py).

    from agents.deploy.export import export_policy
    onnx_path, meta_path = export_policy("outputs/.../checkpoints/best.zip", "exported/")

Either trainer's checkpoint: SB3's ``.zip`` or the TorchRL trainer's ``.pt`` (its actor as plain
ops, `agents.deploy.torchrl_graph`); the model file and metadata are the same for both.

The ONNX graph takes raw detector readings, not training observations, so everything between
the detectors and the action lives inside it and cannot drift from training:

==================  ==============  ======================================================
input               shape / type    meaning
==================  ==============  ======================================================
``lane_count``      [N, L] float32  vehicles on each incoming lane (metadata's lane order,
                                    zero-padded to L lanes)
``lane_halting``    [N, L] float32  of those, vehicles slower than the halting speed
``phase``           [N] int64       the intersection's current phase (roadnet phase index)
``time_in_phase``   [N] float32     seconds since that phase was commanded
``intersection``    [N] int64       which intersection each row is (metadata index)
``approach_moving``  [N, L] float32  vehicles within 100 m of the stop line, moving, per lane
``approach_halting``  [N, L] float32  the same, halting; these two only for a policy that
                                    observes them (`agents.deploy.export_metadata.model_inputs`)
==================  ==============  ======================================================

Outputs: ``action`` [N] int64 (the policy's choice among the intersection's actions),
``phase_command`` [N] int64 (its roadnet phase index) and ``logits`` [N, A] float32 (masked).
Inside: the observation features in training order (`envs.rl.features` definitions, including
the observation normalisation), the policy network (shared, or per-intersection weights
gathered by ``intersection``), the action mask of each intersection (padded actions can never
be chosen), and the deterministic action as the trainer's controller computes it (sb3-contrib:
argmax of the masked softmax; TorchRL: argmax of the masked logits). The batch size N is
dynamic: any subset of intersections, in any order.

Only features the policy runtime can compute from those readings export: ``lane_count``,
``lane_halting``, ``approach_moving``, ``approach_halting``, ``phase_onehot``,
``time_in_phase`` and ``intersection_id``. A policy trained on other features
(``segment_counts``, ``pressure``) is refused with an error naming the feature.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn

from agents.deploy.config import ExportConfig
from agents.deploy.export_files import (
    check_destination, check_name, check_opset, check_writable, check_written_opset,
)
from agents.deploy.export_metadata import (
    BASE_INPUTS, OUTPUTS, intersections_entry, model_entry, model_inputs, observation_entry, project_version,
    timing_entry,
)
from agents.deploy.max_red import max_red_problem
from agents.deploy.metadata import CHECKSUM_FIELD, METADATA_FORMAT, metadata_checksum
from agents.deploy.torchrl_graph import TorchRLActor
from agents.ppo.atomic_files import atomic_path, write_text_atomic
from agents.ppo.indexed_policy import IndexedActorCriticPolicy
from agents.ppo.policy import load_policy
from envs.errors import CheckpointError, ConfigError, recorded
from envs.rl.features import TIME_IN_PHASE_MAX_S, feature_context, shortest_spacing
from envs.rl.movement_features import APPROACH_SCALE
from envs.rl.actions import action_settings
from envs.engine.intersections import IntersectionLayout, intersection_layout
from envs.scenario import Scenario, load_scenario, reads_no_dataset
from envs.scenario.registry import DATA_DIR_CONFIG_KEY

INPUTS = BASE_INPUTS  # every model's inputs; a policy observing approach counts takes two more (model_inputs)
EXPORTABLE_FEATURES = ("lane_count", "lane_halting", "approach_moving", "approach_halting", "phase_onehot",
                       "time_in_phase", "intersection_id")
# per-lane features computed from the reading of the same name (lane totals, approach counts)
PER_LANE_FEATURES = ("lane_count", "lane_halting", "approach_moving", "approach_halting")
MASKED_LOGIT = -1e8  # what sb3-contrib's MaskableCategorical writes into masked logits


class DeployablePolicy(nn.Module):
    """Detector readings -> (action, phase command, masked logits); see the module doc."""

    def __init__(self, policy, env_meta: dict, layout: IntersectionLayout, lane_storage: torch.Tensor) -> None:
        super().__init__()
        self.features = list(env_meta["observations"])
        self.normalise = bool(env_meta["normalise"])
        self.num_intersections = layout.num_intersections
        in_lanes = layout.in_lanes.cpu()
        valid = in_lanes >= 0
        storage = lane_storage.cpu()[torch.where(valid, in_lanes, 0)]
        self.register_buffer("lane_valid", valid.to(torch.float32))
        self.register_buffer("lane_scale", torch.where(valid, storage, torch.ones_like(storage)))
        self.register_buffer("action_phase", layout.action_phase.cpu())
        self.register_buffer("action_mask", layout.action_mask.cpu())
        self.policy = policy
        self.independent = isinstance(policy, IndexedActorCriticPolicy)
        self.torchrl = isinstance(policy, TorchRLActor)

    def observation(self, lanes: dict, phase, time_in_phase, intersection) -> torch.Tensor:
        """The training observation rows ``[N, F]``, as `envs.rl.features` computes them, from
        the per-lane readings `lanes` (name -> ``[N, L]``) and the signal's."""
        parts = []
        for name in self.features:
            if name in PER_LANE_FEATURES:
                per_lane = lanes[name] * self.lane_valid[intersection]
                if self.normalise:  # lane totals by the lane's storage, approach counts by the approach's
                    scale = APPROACH_SCALE if name.startswith("approach_") else self.lane_scale[intersection]
                    per_lane = per_lane / scale
                parts.append(per_lane)
            elif name == "phase_onehot":
                parts.append((self.action_phase[intersection] == phase.unsqueeze(1)).to(torch.float32))
            elif name == "time_in_phase":
                seconds = time_in_phase.clamp(max=TIME_IN_PHASE_MAX_S)
                parts.append((seconds / TIME_IN_PHASE_MAX_S if self.normalise else seconds).unsqueeze(1))
            elif name == "intersection_id":
                parts.append(nn.functional.one_hot(intersection, self.num_intersections).to(torch.float32))
            else:  # export_policy refuses these before building the module
                raise ValueError(f"feature {name!r} cannot be computed from detector readings")
        return torch.cat(parts, 1)

    def logits(self, obs: torch.Tensor, intersection: torch.Tensor) -> torch.Tensor:
        if self.torchrl:  # the actor MLP on each row (shared or the row's intersection's weights)
            return self.policy(obs, intersection)
        features = self.policy.extract_features(obs, self.policy.pi_features_extractor)
        if self.independent:  # per-intersection weights, gathered row by row
            layers = self.policy.mlp_extractor.policy_net
            return layers.forward_rows(features[:, : -self.num_intersections], intersection)
        return self.policy.action_net(self.policy.mlp_extractor.forward_actor(features))

    def forward(self, lane_count, lane_halting, phase, time_in_phase, intersection,
                approach_moving=None, approach_halting=None):
        lanes = {"lane_count": lane_count, "lane_halting": lane_halting,
                 "approach_moving": approach_moving, "approach_halting": approach_halting}
        obs = self.observation(lanes, phase, time_in_phase, intersection)
        mask = self.action_mask[intersection]
        masked = torch.where(mask, self.logits(obs, intersection),
                             torch.full_like(mask, MASKED_LOGIT, dtype=torch.float32))
        action = torch.argmax(masked if self.torchrl else torch.softmax(masked, dim=1), dim=1)
        phase_command = torch.gather(self.action_phase[intersection], 1, action.unsqueeze(1)).squeeze(1)
        return action, phase_command, masked


def check_exportable(meta: dict, source: str) -> None:
    """CheckpointError if the policy reads a feature the runtime's readings cannot give, or acts
    in an action mode the runtime does not run (it runs choose-next-phase policies only: its
    timing rules and fail-safe plan by phase, with no keep/switch or held-duration decisions)."""
    mode, _ = action_settings(meta["env"])
    if mode != "phase":
        raise CheckpointError(
            source, "env.action_mode", mode,
            f"the deployment runtime runs action_mode 'phase' policies only; a {mode!r} policy cannot "
            "be exported (evaluate it with evaluate.py checkpoint=...)",
        )
    for name in meta["env"]["observations"]:
        if name not in EXPORTABLE_FEATURES:
            raise CheckpointError(
                source, "env.observations", name,
                "this feature needs more than the policy runtime's readings (lane counts, "
                f"halting counts, approach counts, phase, time in phase); exportable: {', '.join(EXPORTABLE_FEATURES)}",
            )


def check_timing(engine: dict, interval: int, max_green_s: float, max_red_s: float | None = None) -> None:
    """ConfigError unless max green is finite and min green + one decision interval <= max green, and
    max red is None or a finite number > 0 no shorter than `max_red_floor`."""
    problem = max_red_s is not None and max_red_problem(max_red_s, engine["min_green_s"], engine["yellow_s"],
                                                        engine["all_red_s"], interval)
    if problem:
        raise ConfigError("<config>", "max_red_s", max_red_s, problem)
    if not math.isfinite(max_green_s):  # inf or NaN was reported as too short, which it is not
        raise ConfigError("<config>", "max_green_s", max_green_s, "must be a finite number of seconds")
    if max_green_s < engine["min_green_s"] + interval:
        raise ConfigError(
            "<config>", "max_green_s", max_green_s,
            f"must be at least the policy's min green + decision interval ({engine['min_green_s']} + {interval} s)",
        )


def _scenario(meta: dict, source: str, data_dir: str | None) -> Scenario:
    """The checkpoint's scenario (its meta's ``config.scenario``), found under `data_dir` (export's own
    ``data_dir`` key) or where training found it."""
    name = recorded(meta, source, "config.scenario.name", "export loads the policy's scenario by it")
    scenario_cfg = meta["config"]["scenario"]
    seed = scenario_cfg.get("seed", 0)
    if data_dir is None:
        return load_scenario(name, seed=seed, data_dir=scenario_cfg.get("data_dir"))
    no_dataset = reads_no_dataset(name)
    if no_dataset:  # it was ignored silently: a moved network was still read where it had been
        raise ConfigError("<config>", "data_dir", data_dir, f"nothing reads it: the checkpoint's scenario {name!r} is "
                          f"{no_dataset} and reads no dataset")
    try:
        return load_scenario(name, seed=seed, data_dir=data_dir)
    except ConfigError as error:
        if error.field != DATA_DIR_CONFIG_KEY:
            raise
        # the registry names train.py's key, scenario.data_dir; here the user typed export's data_dir
        raise ConfigError("<config>", "data_dir", data_dir,
                          error.reason.replace(DATA_DIR_CONFIG_KEY, "data_dir")) from None


def _lane_context(scenario: Scenario, layout: IntersectionLayout):
    """The feature context of the readings' plausible range: what a lane can hold at the demand's
    shortest vehicle spacing (the training env's observation bounds use the same figure)."""
    return feature_context(scenario.network, layout, None, shortest_spacing(scenario.demand(1)))


def _write_onnx(module: DeployablePolicy, layout: IntersectionLayout, inputs: tuple[str, ...], opset: int,
                path: Path) -> None:
    """Export `module` taking `inputs`, with a dynamic batch dimension (the exporter's chatter silenced)."""
    lanes, rows = layout.max_in_lanes, min(3, layout.num_intersections)
    example = (
        torch.zeros(rows, lanes), torch.zeros(rows, lanes),
        layout.action_phase[:rows, 0].cpu().clone(), torch.zeros(rows),
        torch.arange(rows, dtype=torch.int64),
    ) + tuple(torch.zeros(rows, lanes) for _ in inputs[len(BASE_INPUTS):])
    batch = torch.export.Dim("batch", min=1)
    # the exporter's chatter (deprecations, optimisation passes, torchvision ops) is not ours
    chatty = [logging.getLogger(name) for name in ("torch.onnx", "onnx_ir", "onnxscript")]
    levels = [log.level for log in chatty]
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        for log in chatty:
            # onnxscript logs a failed opset conversion as a warning with a traceback; the opset
            # written is checked afterwards (check_written_opset), which says it in one line
            log.setLevel(logging.WARNING if log.name == "onnx_ir" else logging.ERROR)
        try:
            program = torch.onnx.export(
                module, example, dynamo=True, opset_version=opset, input_names=list(inputs),
                output_names=list(OUTPUTS), dynamic_shapes=tuple({0: batch} for _ in inputs),
                verbose=False, report=False,
            )
        finally:
            for log, level in zip(chatty, levels):
                log.setLevel(level)
    program.save(str(path))


def export_policy(
    checkpoint: str | Path,
    out_dir: str | Path,
    *,
    name: str | None = ExportConfig.name,
    opset: int = ExportConfig.opset,
    max_green_s: float = ExportConfig.max_green_s,
    max_red_s: float | None = ExportConfig.max_red_s,
    data_dir: str | None = None,
    scenario: Scenario | None = None,
    overwrite: bool = ExportConfig.overwrite,
    verify: Callable[[Path], None] | None = None,
) -> tuple[Path, Path]:
    """Write ``<out_dir>/<name>.onnx`` and ``<out_dir>/<name>.json`` (`name` None: the
    checkpoint's stem, best.zip -> best.onnx, as export.py); returns both paths.

    The scenario is the checkpoint's (``config.scenario``, found under `data_dir` or where
    training found it) unless `scenario` gives one (e.g. built in code rather than by name).
    `verify` (export.py's check against torch) runs on the model before either file is in
    place: when it raises, nothing is written and an export already there stays."""
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    name = checkpoint.stem if name is None else name
    onnx_path, meta_path = out_dir / f"{name}.onnx", out_dir / f"{name}.json"
    check_name(name, onnx_path, meta_path)
    check_opset(opset)  # before any work
    check_writable([onnx_path, meta_path], out_dir)
    if checkpoint.suffix == ".pt":  # the TorchRL trainer's checkpoint
        from agents.ppo.torchrl_policy import load_torchrl_policy

        greedy, meta = load_torchrl_policy(checkpoint)
        policy = TorchRLActor(greedy)
    else:
        model, meta = load_policy(checkpoint)
        policy = model.policy
    check_exportable(meta, str(checkpoint))
    # an existing export after the checkpoint: an .onnx given as the checkpoint is named as such,
    # not as an export in the way
    check_destination([onnx_path, meta_path], overwrite, out_dir)
    env_meta, config = meta["env"], meta.get("config", {})
    engine, interval = env_meta["engine"], int(env_meta["decision_interval_s"])
    check_timing(engine, interval, max_green_s, max_red_s)
    scenario = scenario if scenario is not None else _scenario(meta, str(checkpoint), data_dir)
    layout = intersection_layout(scenario.network)
    if list(layout.ids) != list(env_meta["intersections"]):
        raise CheckpointError(str(checkpoint), "env.intersections", list(layout.ids),
                              f"scenario {scenario.name} no longer matches the policy's intersections")
    ctx = _lane_context(scenario, layout)
    module = DeployablePolicy(policy, env_meta, layout, ctx.lane_storage).eval()

    inputs = model_inputs(env_meta["observations"])
    with atomic_path(onnx_path) as partial:  # a killed or failed export leaves no torn model
        _write_onnx(module, layout, inputs, opset, partial)
        check_written_opset(partial, opset)
        if verify is not None:
            verify(partial)
    metadata = {
        "format": METADATA_FORMAT,
        "project": {"name": "gridlight", "version": project_version()},
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": model_entry(onnx_path, opset, layout, inputs),
        "observation": observation_entry(env_meta, layout),
        "timing": timing_entry(engine, interval, max_green_s, max_red_s),
        "intersections": intersections_entry(scenario.network, layout, ctx.lane_max_vehicles, max_green_s,
                                             scenario.info.get("sumo_lights")),
        "training": {
            "checkpoint": str(checkpoint),
            "scenario": scenario.name,
            "agent": config.get("agent", {}).get("name"),
            "num_timesteps": meta.get("num_timesteps"),
            "config": config,
        },
    }
    metadata = json.loads(json.dumps(metadata))  # the checksum is of what the runtime will read back
    metadata[CHECKSUM_FIELD] = metadata_checksum(metadata)
    write_text_atomic(meta_path, json.dumps(metadata, indent=1))
    return onnx_path, meta_path


__all__ = ["DeployablePolicy", "EXPORTABLE_FEATURES", "INPUTS", "OUTPUTS", "check_exportable", "check_timing",
           "export_policy", "model_inputs"]
