"""What trainVal.py runs: training and testing one model (train_task.py over training.py), the
hyper-parameter search (search.py), and the perturbation tasks of the saliency maps (attention_metrics.py)."""
