"""`elcl sweep`: a config's grid of runs on a process pool or Ray, resumable, with a
deadline, and λ by search (spec, grid, cells, worker, backends, scheduler, search, progress)."""
