import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from brnpa.runs.args import build_parser, parse_args, read_config_file
from brnpa.jobs.training import StepConfig, build_optimizer, distillation_loss, train_one_epoch


class LinearModel(nn.Module):
    """No batch-norm, no dropout: accumulated and whole-batch gradients must agree."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(12, 3)

    def forward(self, images):
        return {"output": self.linear(images.flatten(1))}


def run_one_step(single_pass, optim):
    model = LinearModel()
    torch.manual_seed(1)
    images, target = torch.randn(6, 3, 2, 2), torch.tensor([0, 1, 2, 0, 1, 1])
    loader = [(images, target)]
    step = StepConfig(chunk_size=single_pass, nll_weight=1.0, kl_interp=0.5, kl_temp=1.0)
    optimizer = build_optimizer(model.parameters(), optim, 0.1, momentum=0.9)
    values = train_one_epoch(model, loader, optimizer, torch.device("cpu"), step)
    return model, values, images, target


@pytest.mark.parametrize("optim", ["SGD", "Adam"])
def test_gradient_accumulation_is_one_step_per_batch(optim):
    whole, whole_values, images, target = run_one_step(6, optim)
    accumulated, acc_values, _, _ = run_one_step(2, optim)
    uneven, _, _, _ = run_one_step(4, optim)  # chunks of 4 and 2
    for a, b, c in zip(whole.parameters(), accumulated.parameters(), uneven.parameters()):
        assert torch.allclose(a, b, atol=1e-6) and torch.allclose(a, c, atol=1e-6)
    assert abs(whole_values["loss"] - acc_values["loss"]) < 1e-6
    if optim == "SGD":
        # independent computation: one SGD step on the mean loss of the whole batch
        reference = LinearModel()
        loss = F.cross_entropy(reference(images)["output"], target)
        grads = torch.autograd.grad(loss, list(reference.parameters()))
        for p, g, trained in zip(reference.parameters(), grads, whole.parameters()):
            assert torch.allclose(p - 0.1 * g, trained, atol=1e-6)


def test_distillation_loss_formula():
    student = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
    teacher = torch.tensor([[1.0, 1.5, 0.0], [3.0, -1.0, 0.0]])
    target = torch.tensor([0, 2])
    alpha, temp = 0.3, 4.0
    kl = 0.0
    for s, t in zip(student, teacher):
        p_t = torch.softmax(t / temp, 0)
        p_s = torch.softmax(s / temp, 0)
        kl += (p_t * (p_t.log() - p_s.log())).sum()
    kl /= 2
    ce = -(torch.log_softmax(student, 1)[0, 0] + torch.log_softmax(student, 1)[1, 2]) / 2
    expected = alpha * temp ** 2 * kl + (1 - alpha) * ce
    assert torch.allclose(distillation_loss(student, teacher, target, alpha, temp), expected, atol=1e-6)


def write(path, text):
    path.write_text(text)
    return str(path)


def test_config_values_and_cli_override(tmp_path):
    config = write(tmp_path / "c.config", "[default]\n# comment\nlr = 0.5\noptim = Adam  # inline\n"
                                          "pretrained = False\nepochs = 7\n")
    args = parse_args(["-c", config])
    assert args.lr == 0.5 and args.optim == "Adam" and args.pretrained is False and args.epochs == 7
    args = parse_args(["-c", config, "--lr", "0.01", "--pretrained", "True"])
    assert args.lr == 0.01 and args.pretrained is True and args.epochs == 7
    assert parse_args([]).lr == 0.001  # argparse default without a config


def test_config_unknown_key_names_file_and_line(tmp_path):
    config = write(tmp_path / "c.config", "lr = 0.5\n\nlearning_rate = 3\n")
    with pytest.raises(ValueError, match=r"c.config, line 3: unknown key 'learning_rate'"):
        read_config_file(config, build_parser())
    with pytest.raises(SystemExit):
        parse_args(["-c", config])


def test_config_bad_values(tmp_path):
    with pytest.raises(ValueError, match=r"line 1: bad value for 'attention'"):
        read_config_file(write(tmp_path / "a.config", "attention = yes\n"), build_parser())
    with pytest.raises(ValueError, match=r"line 2: bad value for 'epochs'"):
        read_config_file(write(tmp_path / "b.config", "lr = 1\nepochs = many\n"), build_parser())
    with pytest.raises(ValueError, match=r"'optim' must be one of"):
        read_config_file(write(tmp_path / "d.config", "optim = sgd\n"), build_parser())
    with pytest.raises(SystemExit):
        parse_args(["--attention", "maybe"])


def test_written_config_reads_back(tmp_path):
    from brnpa.runs.args import load_config, write_config
    args = parse_args(["--lr", "0.02", "--m_model_id", "teacher", "--master_net", "True"])
    write_config(args, str(tmp_path / "x.ini"))
    back = load_config(str(tmp_path / "x.ini"))
    assert vars(back) == {**vars(args), "config": None}
    assert parse_args([]).m_model_id is None


def test_the_teachers_logits_reach_the_loss():
    """With a teacher, the loss of a step is the distillation loss of the student's and the teacher's logits
    (alpha = 1: the KL term alone), computed here before the step."""
    student, teacher = LinearModel(), LinearModel()
    with torch.no_grad():
        teacher.linear.weight.mul_(-3)  # a teacher that disagrees with the student
    torch.manual_seed(1)
    images, target = torch.randn(6, 3, 2, 2), torch.tensor([0, 1, 2, 0, 1, 1])
    with torch.no_grad():
        expected = distillation_loss(student(images)["output"], teacher(images)["output"], target, 1.0, 4.0)
        alone = F.cross_entropy(student(images)["output"], target)
    step = StepConfig(chunk_size=3, nll_weight=1.0, kl_interp=1.0, kl_temp=4.0)
    optimizer = build_optimizer(student.parameters(), "SGD", 0.0)
    values = train_one_epoch(student, [(images, target)], optimizer, torch.device("cpu"), step, teacher=teacher)
    assert values["loss"] == pytest.approx(expected.item(), abs=1e-6)
    assert abs(values["loss"] - alone.item()) > 1e-3


def released_kept_counts(loader_sizes, batch_size):
    """How many images of each loader batch the authors' released loop trained on, transcribed from its
    accumulation: a batch that overflows batch_size is cut to what is missing (it keeps 2 x the GPU count
    instead when fewer are missing: no GPU here)."""
    acc_size, kept = 0, []
    for size in loader_sizes:
        if acc_size + size > batch_size:
            size = batch_size - acc_size
            acc_size = batch_size
        else:
            acc_size += size
        kept.append(size)
        if acc_size == batch_size:
            acc_size = 0
    return kept


class RecordingModel(LinearModel):
    """Remembers the index of every image it is trained on (each image holds its index in every pixel)."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, images):
        self.seen += images[:, 0, 0, 0].round().long().tolist()
        return super().forward(images)


@pytest.mark.parametrize("image_nb, batch_size, chunk, expected_steps", [
    (18, 12, 9, 1),  # the ablations' setting: 9 + 3 of every 18 images
    (27, 12, 9, 2),  # 9 + 3 | the third batch, at the end of the epoch: a last, smaller step
    (140, 130, 12, 2),  # the searched maximum: 2 images of 132 lost, then the 8 left at the end
    (20, 8, 8, 3),  # batch = chunk: nothing is cut
])
def test_released_batch_cut_trains_on_the_released_images(image_nb, batch_size, chunk, expected_steps):
    images = torch.arange(image_nb, dtype=torch.float32)[:, None, None, None].expand(image_nb, 3, 2, 2).clone()
    target = torch.arange(image_nb) % 3
    loader = [(images[i:i + chunk], target[i:i + chunk]) for i in range(0, image_nb, chunk)]
    kept = released_kept_counts([len(t) for _, t in loader], batch_size)
    expected = [int(index) for (batch, _), count in zip(loader, kept) for index in batch[:count, 0, 0, 0]]
    model = RecordingModel()
    optimizer = build_optimizer(model.parameters(), "SGD", 0.1)
    steps = []
    real_step = optimizer.step
    optimizer.step = lambda: (steps.append(1), real_step())
    step = StepConfig(chunk_size=chunk, batch_size=batch_size, released_batch_cut=True)
    train_one_epoch(model, loader, optimizer, torch.device("cpu"), step)
    assert model.seen == expected and len(steps) == expected_steps
    if batch_size == chunk:
        assert expected == list(range(image_nb))
    else:
        assert len(expected) < image_nb  # some images are never seen


def test_every_image_is_trained_on_by_default():
    images = torch.arange(18, dtype=torch.float32)[:, None, None, None].expand(18, 3, 2, 2).clone()
    loader = [(images[i:i + 12], torch.arange(i, min(i + 12, 18)) % 3) for i in (0, 12)]
    model = RecordingModel()
    train_one_epoch(model, loader, build_optimizer(model.parameters(), "SGD", 0.1), torch.device("cpu"),
                    StepConfig(chunk_size=9, batch_size=12))
    assert model.seen == list(range(18))


def test_a_log_gets_a_progress_line_at_each_interval():
    """Ten batches of 4 images, 10 s each, a line every 30 s: lines after 3, 6 and 9 batches, with the images
    done, the rate since the start (0.4 images/s) and the time left (28 images at 0.4/s = 1:10 after 12)."""
    import io
    from brnpa.runs.runtime import LogLines
    now = [0.0]

    def clock():
        return now[0]
    stream = io.StringIO()
    batches = [(torch.zeros(4, 3), torch.zeros(4)) for _ in range(10)]
    lines = LogLines(batches, "train", 40, images_of=lambda batch: len(batch[1]), interval=30, clock=clock,
                     stream=stream)
    for _ in lines:
        now[0] += 10
    assert stream.getvalue().splitlines() == ["train: 12 of 40 images, 0.4 images/s, 1:10 left",
                                              "train: 24 of 40 images, 0.4 images/s, 0:40 left",
                                              "train: 36 of 40 images, 0.4 images/s, 0:10 left"]
    resumed = LogLines(range(3), "Del", 10, initial=5, interval=0, clock=clock, stream=stream)
    now[0] += 4
    resumed.update(2)  # 2 images in 4 s since this pass began: 0.5/s, 3 left
    assert stream.getvalue().splitlines()[-1] == "Del: 7 of 10 images, 0.5 images/s, 0:06 left"
