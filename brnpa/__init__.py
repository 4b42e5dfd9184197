"""BR-NPA and a bench for how faithful attention and saliency maps are.

One package, in layers (each imports only from the ones before it): core (options, errors, files, the model-id
table), data and models, metrics (the tables of saliency sources, curves, tasks and scores), runs (a run's
options and files), analysis (statistics, tables, the report), jobs (training, the search, the perturbation
tasks) and cli (the commands). The seed's scripts at the repository's root (trainVal.py, processResults.py,
train.sh, ...) and the console command `brnpa` are shells over brnpa.cli. Nothing is imported here, so that
`--help` stays fast.
"""
