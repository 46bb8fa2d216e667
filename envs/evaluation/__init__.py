"""Measuring controllers: the metrics hub, statistics, reports and plots, the evaluation configs
(`config`), several controllers over one batch (`mixture`) and controllers x demand seeds in
one batched run (`runner`).
May import envs.scenario, envs.engine and envs.incidents; never envs.rl or agents."""
