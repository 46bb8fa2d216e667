"""What the Hydra configs compose to, key for key (tests/test_configs.py compares against these):
the default training and evaluation runs and every perturbation preset."""

# `python train.py --cfg job` with no override (interpolations unresolved): what the default
# training run composes, key for key and in this order.
DEFAULT_TRAIN_RUN = """\
scenario:
  name: grid_4x4
  seed: 0
  horizon: null
  data_dir: ${oc.env:GRIDLIGHT_DATA_DIR,null}
engine:
  yellow_s: 3
  all_red_s: 2
  min_green_s: 5
  halting_speed: 0.1
  max_vehicles: null
  junction_yielding: false
  yield_gap_s: 4.0
  device: cpu
  compile: false
env:
  copies: 16
  decision_interval_s: 5
  action_mode: phase
  green_durations_s:
  - 10
  - 15
  - 20
  - 25
  - 30
  - 35
  - 40
  episode_s: 3600
  observations:
  - phase_onehot
  - time_in_phase
  - lane_count
  - lane_halting
  - approach_moving
  - approach_halting
  reward:
    queue: 1.0
  normalise: true
  demand:
    mode: poisson
    scale: 1.0
    jitter_s: 30.0
  demand_pool: 0
  probes:
    p: 0.0
    interval_s: 5
    gps_noise_m: 0.0
    speed_noise: 0.0
    dropout_p: 0.0
    seed: 0
agent:
  name: ppo_shared
  policy: shared
  intersection_id: true
  net_arch:
  - 64
  - 64
  activation: tanh
  ortho_init: true
  n_steps: 64
  batch_size: 1024
  n_epochs: 10
  learning_rate: 0.001
  gamma: 0.95
  gae_lambda: 0.95
  clip_range: 0.2
  ent_coef: 0.01
  vf_coef: 0.5
  max_grad_norm: 0.5
  target_kl: null
  normalize_advantage: true
  reward_scale: 0.05
train:
  total_agent_steps: 2000000
  eval_every: 200000
  checkpoint_every: 200000
  device: auto
  compile: false
  progress: true
  threads: null
  max_agents_per_step: null
eval:
  seeds: 3
  steps: 3600
  demand:
    mode: poisson
    scale: 1.0
    jitter_s: 30.0
  baselines:
  - fixed_time
  - max_pressure
baseline_params:
  fixed_time:
    plan: roadnet
    cycle_s: 120.0
    offset_s: 0.0
  max_pressure:
    min_green_s: 10
    use_halting: false
    tie_break_by_inflow: true
    sensing: lane
perturbation:
  name: clean
  seed: 0
  incidents: null
  surge: null
  detectors: null
trainer: sb3
torchrl:
  centralised_critic: null
  log_every_rollouts: 1
  eval_stochastic: false
  loss: own
seed: 0
resume: null
"""


# `python evaluate.py --cfg job`'s own keys and controllers (its scenario and engine are train's)
DEFAULT_EVALUATE_RUN = """\
controller_params:
  fixed_time: {plan: roadnet, cycle_s: 120.0, offset_s: 0.0}
  fixed_time_webster: {saturation_flow_vph: 1800.0, startup_lost_s: 0.0, min_cycle_s: 40.0, max_cycle_s: 180.0,
                       min_green_s: 10.0, window: horizon, window_s: 3600, phase_set: cover, offset_s: 0.0}
  max_pressure: {min_green_s: 10, use_halting: false, tie_break_by_inflow: true, sensing: lane}
  sotl: {theta: 40.0, distance_m: 80.0, omega_m: 25.0, mu: 3, min_green_s: 10.0, max_green_s: null,
         switch_to: demand}
  efficient_mp: {min_green_s: 10.0}
  advanced_mp: {min_green_s: 10.0, horizon_s: 10.0, weight: 1.0}
perturbation: {name: clean, seed: 0, incidents: null, surge: null, detectors: null}
task: signals
controllers: [fixed_time, fixed_time_webster, max_pressure, sotl, efficient_mp, advanced_mp]
checkpoint: null
checkpoint_max_green_s: null
deployed: null
eval: {steps: 3600, seeds: 3, demand: {mode: poisson, scale: 1.0, jitter_s: 30.0}, plots: true, progress: true}
render: false
render_every_s: 10
render_fps: 8
detection:
  controller: max_pressure
  placement: null
  train_copies: 64
  copies: 64
  interval_s: 10
  target_precision: 0.95
  classifiers: [blockage_rule, learned_mlp]
  learned: {history: 6, hidden: 64, epochs: 30, folds: 4}
  probes: {p: 0.0, interval_s: 5, gps_noise_m: 0.0, speed_noise: 0.0, dropout_p: 0.0, seed: 0}
"""

# every perturbation preset as composed (and as written, every key, before the specs held the defaults)
COMPOSED_PERTURBATIONS = """\
clean: {name: clean, seed: 0, incidents: null, surge: null, detectors: null}
capacity_drop: {name: capacity_drop, seed: 0, surge: null, detectors: null, incidents: {
  count: 3, lanes: null, placement: uniform, start_s: [300, 2400], duration_s: 1200, capacity: 0.4,
  position: stop_line, rate_per_hour: null}}
detector_faults: {name: detector_faults, seed: 0, incidents: null, surge: null, detectors: {
  noise_std: 1.0, dropout_p: 0.05, stuck_p: 0.05, stuck_at_s: 600, dead_p: 0.1}}
incident: {name: incident, seed: 0, surge: null, detectors: null, incidents: {
  count: 1, lanes: null, placement: uniform, start_s: [300, 2700], duration_s: 900, capacity: 0.0,
  position: stop_line, rate_per_hour: null}}
mixed: {name: mixed, seed: 0,
  incidents: {count: 1, lanes: null, placement: uniform, start_s: [300, 2700], duration_s: 900, capacity: 0.0,
              position: stop_line, rate_per_hour: null},
  surge: {scale: 1.3, start_s: 900, end_s: 1800, ramp_s: 0},
  detectors: {noise_std: 0.5, dropout_p: 0.02, stuck_p: 0.02, stuck_at_s: 600, dead_p: 0.05}}
surge: {name: surge, seed: 0, incidents: null, detectors: null, surge: {
  scale: 1.5, start_s: 900, end_s: 1800, ramp_s: 0}}
"""
