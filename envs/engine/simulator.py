"""`Simulator`: owns a network, a batched demand and the current state; steps them.

The step itself (`envs.engine.step.step`) is pure; this class adds what a user needs around it:
input checks, slot sizing, optional `torch.compile`, reset / snapshot / restore, and a loop
that drives a controller.
"""

from __future__ import annotations

import warnings
from typing import Callable, Protocol

import numpy as np
import torch

from envs.engine.fit_checks import demand_problem, snapshot_problem
from envs.engine.ops import use_inductor_buffers
from envs.engine.state import INDEX, SLOT_FIELDS, TIMER_START, EngineParams, SimState
from envs.engine.step import step as pure_step
from envs.errors import CommandError, ConfigError, flag, is_whole
from envs.scenario.demand import NEVER, Demand
from envs.scenario.network import Network

COMPILED_SHAPES = 256  # compiled step variants kept per process (see Simulator.__init__)
# Inductor options for the CPU step:
# - no SIMD: the step is mostly gathers and masked selects, which the AVX-512 code emulates
#   lane by lane (index buffers, mask conversions); the scalar loops run the same step about
#   1.5x faster on one thread (hangzhou_4x4, B=64);
# - a C++ wrapper around the kernels instead of Python: saves ~35 us per call, which matters
#   for small batches (B=1: ~265 -> ~230 us per step).
CPU_COMPILE_OPTIONS = {"cpp.simdlen": 1, "cpp_wrapper": True}
SLOT_CHECK_EVERY = 4  # steps between checks of the free vehicle slots (one host sync each)


def _step_in_place(network, demand, params, state, command):
    return pure_step(network, demand, params, state, command, inplace=True)


class Controller(Protocol):
    """Anything that maps the simulator's state to phase commands ``[B, I]`` (-1 = keep)."""

    def reset(self, sim: "Simulator") -> None: ...

    def act(self, sim: "Simulator") -> torch.Tensor: ...


class Simulator:
    def __init__(
        self,
        network: Network,
        demand: Demand,
        params: EngineParams | None = None,
        *,
        compile: bool = False,
        validate_commands: bool = True,
    ) -> None:
        flag(compile, "<engine>", "compile")  # bool("false") is True: it compiled
        self.params = params or EngineParams()
        if not isinstance(self.params, EngineParams):  # a dict had no .validate (an AttributeError)
            raise ConfigError("<engine>", "params", type(self.params).__name__, "expected EngineParams(...)")
        self.params.validate()
        if demand.batch_size < 1:
            raise ConfigError("<engine>", "copies", demand.batch_size, "need B >= 1")
        if demand.depart.device != network.lane_length.device:
            raise ConfigError(
                "<engine>", "device", str(demand.depart.device),
                f"demand and network must be on one device (network: {network.device})",
            )
        problem = demand_problem(network, demand)
        if problem:
            raise ConfigError("<engine>", *problem)
        self.network = network
        self.demand = demand
        self.num_slots = self.params.max_vehicles or default_slots(network, demand)
        self.validate_commands = validate_commands
        # the simulator owns its state, so it steps in place (see step's docstring)
        self._step: Callable = _step_in_place
        if compile:
            # Every (batch, slot pool, trips, network) shape is compiled once; the pool grows by
            # doubling and processes often build several simulators. Dynamo's default of 8
            # compiled shapes per function would then silently fall back to eager.
            dynamo_config = torch._dynamo.config
            dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, COMPILED_SHAPES)
            options = CPU_COMPILE_OPTIONS if network.device.type == "cpu" else None
            use_inductor_buffers()
            self._step = torch.compile(_step_in_place, dynamic=False, options=options)
        self._origins = int((demand.origin_end > demand.origin_start).sum(1).max())
        self._steps_to_slot_check = 0
        self.state = self.initial_state()

    @property
    def batch_size(self) -> int:
        return self.demand.batch_size

    @property
    def device(self) -> torch.device:
        return self.network.device

    def initial_state(self) -> SimState:
        batch, slots = self.batch_size, self.num_slots
        trips = self.demand.max_trips
        inter, lanes, roads = (
            self.network.num_intersections, self.network.num_lanes, self.network.num_roads
        )
        dev = self.device

        def full(shape, value, dtype):
            return torch.full(shape, value, dtype=dtype, device=dev)

        f32, i64 = torch.float32, torch.int64
        return SimState(
            t=full((batch,), 0, i64),
            phase=full((batch, inter), 0, i64),
            prev_phase=full((batch, inter), 0, i64),
            phase_timer=full((batch, inter), TIMER_START, i64),
            **_empty_slots(batch, slots, trips, dev),
            lane_head=full((batch, lanes + 1), -1, INDEX),
            lane_tail=full((batch, lanes + 1), -1, INDEX),
            lane_count=full((batch, lanes + 1), 0, INDEX),
            # slots are handed out from the top of the stack: slot 0 first
            free_stack=torch.cat(
                [torch.arange(slots - 1, -1, -1, dtype=INDEX, device=dev).expand(batch, -1),
                 full((batch, 1), 0, INDEX)], 1
            ).contiguous(),
            free_top=full((batch,), slots, i64),
            entry_ptr=full((batch, roads), 0, i64),
            trip_enter=full((batch, trips + 1), -1, INDEX),
            trip_finish=full((batch, trips + 1), -1, INDEX),
            trip_stops=full((batch, trips + 1), 0, torch.int32),
            trip_delay=full((batch, trips + 1), 0.0, f32),
            halting_sum=full((batch,), 0.0, f32),
            active_sum=full((batch,), 0.0, f32),
            waiting_sum=full((batch,), 0.0, f32),
            pool_blocked=full((batch,), 0, i64),
        )

    def reset(self) -> SimState:
        self.state = self.initial_state()
        self._steps_to_slot_check = 0
        return self.state

    def reset_copies(self, copies: torch.Tensor) -> None:
        """Reset the copies where the ``[B]`` bool mask is set; the others keep running."""
        shape_ok = isinstance(copies, torch.Tensor) and tuple(copies.shape) == (self.batch_size,)
        if not shape_ok or copies.dtype != torch.bool:
            raise CommandError("<engine>", "copies", getattr(copies, "shape", copies),
                               f"expected a bool tensor of shape [{self.batch_size}] (one per copy)")
        fresh = self.initial_state()
        self.state = SimState(*(
            torch.where(copies.view(-1, *([1] * (now.dim() - 1))), new, now)
            for now, new in zip(self.state, fresh)
        ))

    def set_demand(self, demand: Demand) -> None:
        """Run on `demand` from now on (same copies; e.g. after resampling some copies' trips).

        A demand with more trips per copy grows the per-trip tables; trip ids of running
        vehicles stay valid as long as their copies' trip tables are unchanged."""
        if demand.batch_size != self.batch_size:
            raise ConfigError("<engine>", "copies", demand.batch_size, f"expected {self.batch_size}")
        problem = demand_problem(self.network, demand)  # e.g. another network's demand: a shape error later
        if problem:
            raise ConfigError("<engine>", *problem)
        if demand.max_trips > self.state.trip_enter.shape[1] - 1:
            self.state = grow_trips(self.state, demand.max_trips)
        elif demand.max_trips < self.state.trip_enter.shape[1] - 1:
            raise ConfigError("<engine>", "demand.max_trips", demand.max_trips, "cannot shrink the trip tables")
        self.demand = demand
        self._origins = int((demand.origin_end > demand.origin_start).sum(1).max())

    def snapshot(self) -> SimState:
        """A copy of the state (the simulator updates its own state in place)."""
        return self.state.clone()

    def restore(self, snapshot: SimState) -> None:
        """Continue from `snapshot`, which must come from a simulator of this network and demand
        (`CommandError` naming what differs otherwise)."""
        problem = snapshot_problem(self.state, self.demand, snapshot)
        if problem:
            raise CommandError("<restore>", *problem)
        self.state = snapshot.clone()
        self.num_slots = self.state.num_slots
        self._steps_to_slot_check = 0

    def keep_command(self) -> torch.Tensor:
        return torch.full(
            (self.batch_size, self.network.num_intersections), -1, dtype=torch.int64, device=self.device
        )

    def check_command(self, command: torch.Tensor) -> None:
        expected = (self.batch_size, self.network.num_intersections)
        if not isinstance(command, torch.Tensor):
            shown = (command if isinstance(command, (bool, int, float, str)) or command is None
                     else type(command).__name__)
            raise CommandError("<command>", "type", shown, (
                f"expected a torch int64 tensor of shape {expected} (phase index per copy and intersection, "
                "-1 = keep); a list or numpy array: torch.as_tensor(x, dtype=torch.int64)"))
        if tuple(command.shape) != expected:
            raise CommandError("<command>", "shape", tuple(command.shape), f"expected {expected}")
        if command.dtype not in (torch.int64, torch.int32):
            raise CommandError("<command>", "dtype", str(command.dtype),
                               "expected an int64 or int32 tensor of phase indices (bool and float are not)")
        bad = (command < -1) | (command >= self.network.num_phases.unsqueeze(0))
        if bool(bad.any()):
            b, i = (int(x) for x in torch.nonzero(bad)[0])
            raise CommandError(
                "<command>", f"[{b}, {i}] ({self.network.intersection_ids[i]})", int(command[b, i]),
                f"phase index must be -1 (keep) or in [0, {int(self.network.num_phases[i])})",
            )

    def step(self, command: torch.Tensor | None = None) -> SimState:
        if command is None:
            command = self.keep_command()
        elif self.validate_commands:
            self.check_command(command)
        if self._steps_to_slot_check == 0:
            self.ensure_free_slots()
        self._steps_to_slot_check -= 1
        self.state = self._step(self.network, self.demand, self.params, self.state, command.to(torch.int64))
        return self.state

    def ensure_free_slots(self) -> None:
        """Grow the vehicle-slot pool before it can run out.

        At most one vehicle enters per origin road per step, so a pool with at least
        ``origins * SLOT_CHECK_EVERY`` free slots cannot block an entry before the next check.
        Growing doubles the slots (shapes change: a compiled step recompiles once).
        """
        self._steps_to_slot_check = SLOT_CHECK_EVERY
        if self.params.max_vehicles is not None:
            return  # the user fixed the pool; blocked entries are counted in pool_blocked
        margin = self._origins * SLOT_CHECK_EVERY
        free = int(self.state.free_top.min())
        if free >= margin or self.num_slots >= self.demand.max_trips:
            return
        wanted = max(2 * self.num_slots, self.num_slots + 2 * margin)
        self.state = grow_slots(self.state, min(wanted, self.demand.max_trips))
        self.num_slots = self.state.num_slots

    def run(self, steps: int, controller: Controller | None = None, on_step=None) -> SimState:
        if not is_whole(steps) or steps < 0:
            raise CommandError("<engine>", "steps", steps, "expected a whole number of seconds >= 0")
        steps = int(steps)
        if isinstance(controller, type):  # its act was callable too: a TypeError in reset()
            raise CommandError("<engine>", "controller", controller.__name__,
                               f"a class, not a controller: build one, e.g. {controller.__name__}()")
        if controller is not None and not callable(getattr(controller, "act", None)):
            raise CommandError("<engine>", "controller", controller, "expected a controller (reset(sim), act(sim))")
        if on_step is not None and not callable(on_step):
            raise CommandError("<engine>", "on_step", on_step, "expected a function of the simulator, or None")
        if controller is not None:
            controller.reset(self)
        for _ in range(steps):
            command = controller.act(self) if controller is not None else None
            self.step(command)
            if on_step is not None:
                on_step(self)
        if int(self.state.pool_blocked.max()) > 0:
            warnings.warn(  # pool_blocked adds 1 per trip and step, so it counts seconds, not trips
                f"trips at the front of their origins' queues waited {int(self.state.pool_blocked.max())} s in all "
                f"only for a free vehicle slot (max_vehicles={self.num_slots}); raise EngineParams.max_vehicles",
                stacklevel=2,
            )
        return self.state


def default_slots(network: Network, demand: Demand, factor: float = 2.0, floor: int = 128) -> int:
    """Initial vehicle slots per copy: `factor` x the peak free-flow load, within bounds.

    Each step touches every slot, so slots cost time even when empty; congestion that needs
    more is met by `Simulator.ensure_free_slots`, which grows the pool before it runs out.
    """
    depart = demand.depart.cpu().numpy().astype(np.int64)  # one row per distinct sample
    free_flow = demand.free_flow_time.cpu().numpy()
    peak = 0
    for k in range(depart.shape[0]):
        real = depart[k] < NEVER
        starts = depart[k][real]
        ends = starts + np.ceil(free_flow[k][real]).astype(np.int64) + 1
        events = np.concatenate([starts, ends])
        delta = np.concatenate([np.ones_like(starts), -np.ones_like(ends)])
        order = np.lexsort((delta, events))  # leave before enter at the same step
        peak = max(peak, int(np.cumsum(delta[order]).max(initial=0)))
    wanted = max(int(factor * peak), floor)
    return int(min(wanted, demand.max_trips, network.storage_capacity()))


def _empty_slots(batch: int, slots: int, scratch_trip: int, device) -> dict[str, torch.Tensor]:
    """Every per-vehicle field for `slots` free slots plus the scratch column."""
    return {
        name: torch.full(
            (batch, slots + 1), scratch_trip if fill is None else fill, dtype=dtype, device=device
        )
        for name, (dtype, fill) in SLOT_FIELDS.items()
    }


def grow_slots(state: SimState, slots: int) -> SimState:
    """Return `state` with `slots` vehicle slots (>= the current count), the new ones free.

    Real slots keep their ids (0..old-1), so every stored reference stays valid; the scratch
    column moves to the end. The new ids are pushed on the free stack.
    """
    old = state.num_slots
    extra = slots - old
    if extra <= 0:
        return state
    batch = state.batch_size
    scratch_trip = state.trip_enter.shape[1] - 1
    fields = state._asdict()
    pads = _empty_slots(batch, extra - 1, scratch_trip, state.veh_lane.device)
    for name, pad in pads.items():
        x = fields[name]
        fields[name] = torch.cat([x[:, :old], pad, x[:, old:]], 1)
    stack = torch.zeros((batch, slots + 1), dtype=state.free_stack.dtype, device=state.free_stack.device)
    stack[:, :old] = state.free_stack[:, :old]
    new_ids = torch.arange(slots - 1, old - 1, -1, dtype=stack.dtype, device=stack.device).expand(batch, -1)
    on_top = state.free_top.unsqueeze(1) + torch.arange(extra, device=stack.device).unsqueeze(0)
    fields["free_stack"] = stack.scatter(1, on_top, new_ids)
    fields["free_top"] = state.free_top + extra
    return SimState(**fields)


def grow_trips(state: SimState, trips: int) -> SimState:
    """Return `state` with per-trip tables for `trips` trips per copy (>= the current count).

    Trip ids keep their meaning; the scratch trip moves to the new last column, so slots that
    point at the old scratch id are moved with it."""
    old = state.trip_enter.shape[1] - 1
    extra = trips - old
    if extra <= 0:
        return state
    fields = state._asdict()
    for name, fill in (("trip_enter", -1), ("trip_finish", -1), ("trip_stops", 0), ("trip_delay", 0.0)):
        x = fields[name]
        pad = torch.full((x.shape[0], extra), fill, dtype=x.dtype, device=x.device)
        fields[name] = torch.cat([x[:, :old], pad, x[:, old:]], 1)
    fields["veh_trip"] = torch.where(state.veh_trip == old, trips, state.veh_trip)
    return SimState(**fields)
