"""Mean DAUC and IAUC of the demo models' own maps three ways, on all test images: the float saliency with our
order (the default), --att_metrics_saliency released (the released code's saved maps, arithmetic and topk
order), and the released saliency with our stable order instead of topk's, to measure what the order among
equal values moves; for the CNN also the sparsity as the released code computed it.

    ./demo.sh && python3 -m bench.released_mode results/demo      (from the repository root)
"""
import sys
import numpy as np
import torch
from brnpa.runs import results_io
from brnpa.runs import lifecycle
from brnpa.data.load_data import build_transform, load_rgb, scan_test_folder
from brnpa.metrics.curves import CURVE_METRICS
from brnpa.metrics.perturbation import step_masks, topk_step_masks
from brnpa.metrics.perturbation import saliencies_from_maps
from brnpa.metrics.saliency import SOURCES, SourceInputs
from brnpa.models.heads import head_class
from brnpa.runs.runtime import data_config
from brnpa.jobs.attention_metrics import step_plan

def released_sparsity_sum(att_maps, norm):
    """The released sparsity of a batch, summed over its images: maps (B, h, w) without map axis (the CNN's)
    and norms (B, 1, h, w) broadcast to (B, B, h, w), so each image's value mixes the batch's maps."""
    norm = norm / norm.amax(dim=(-1, -2), keepdim=True)
    maps = att_maps * norm
    maps = maps / (maps.amax(dim=(-1, -2), keepdim=True) + 1e-5)
    if maps.size(1) > 1:
        maps = maps.mean(dim=1, keepdim=True)
    return maps.mean(dim=(2, 3)).sum().item()


if len(sys.argv) != 2:
    sys.exit("usage: python3 -m bench.released_mode RESULTS_FOLDER_OF_THE_DEMO (e.g. results/demo)")
folder = sys.argv[1]
torch.set_grad_enabled(False)
for model_id in ("b_cnn", "br_npa_high_res_distill", "br_npa_low_res", "cnn"):
    landed = lifecycle.LandedRun(folder, model_id)
    model, _ = landed.load_model()
    config = landed.args
    config.att_metrics_few_steps = True
    samples = scan_test_folder(config.data_dir, config.dataset_test, config.class_nb)
    transform = build_transform(data_config(config)[1])
    images = torch.stack([transform(load_rgb(p)) for p, _ in samples])
    head = head_class(config.head)
    batches = [images[i:i + config.val_batch_size] for i in range(0, len(images), config.val_batch_size)]
    released = SOURCES["own_maps"].build(SourceInputs({"att_metrics_saliency": "released"}, head=head,
                                                      test_images=lambda: batches))
    classes = model(images)["output"].argmax(1).tolist()
    inds = list(range(len(images)))
    rel = list(released(model, images, classes, inds))
    att = results_io.read_array(landed.paths["att_maps"], landed.remake)
    norm = results_io.read_array(landed.paths["norm"], landed.remake)
    flt = saliencies_from_maps(att, norm, head, inds)
    cells, _ = step_plan(config, *rel[0].shape)

    def forward(batch):
        return model(batch)["output"]
    line = [model_id]
    for metric in (CURVE_METRICS["Del"], CURVE_METRICS["Add"]):  # the released code's two curves
        aucs = {}
        for name, sal, order in (("float", flt, step_masks), ("released", rel, topk_step_masks),
                                 ("released_stable", rel, step_masks)):
            curves = metric.records(forward, list(images), sal, classes, cells, 64, order)["curves"]
            aucs[name] = np.array([metric.summarise(c.numpy()) for c in curves])
        line.append(f"{metric.name}: float {aucs['float'].mean():.4f} released {aucs['released'].mean():.4f} "
                    f"released-stable-order {aucs['released_stable'].mean():.4f} "
                    f"(largest per-image |topk - stable| {np.abs(aucs['released'] - aucs['released_stable']).max():.4f})")
    if not getattr(head, "released_map_axis", True):  # the CNN: its sparsity as the released code computed it
        total = 0.0
        for batch in batches:
            result = model(batch)
            total += released_sparsity_sum(result["norm"][:, 0], result["norm"])
        line.append(f"sparsity: released code {total / len(images):.4f}, this code {landed.test['sparsity']}")
    print(" | ".join(line), flush=True)
