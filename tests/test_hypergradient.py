"""``hypergradient``: hypergradient descent on the rate (Baydin et al., ICLR 2018).

Exactness is checked on whole trajectories against reference loops written here from the
paper's equations (SGD-HD with the momentum/Nesterov/L2 variants of the authors' ``SGDHD``;
Adam-HD): the rate of every step and the final weights. Then: the rate rises from a rate far
too small and falls from one that diverges; bounds; warmup then adaptation; the errors; and
in a real Lightning ``Trainer`` (helper and ``LRSchedule``), the rate of every step is the one
plain torch computes with the step's own gradient, and ``LRLogger`` logs that rate.
"""

from __future__ import annotations

import math

import lightning.pytorch as pl
import pytest
import torch
from lightning_support import PointsLogger, RateRecorder, TinyModule, regression_data, trainer
from references import reference_test
from torch.utils.data import DataLoader

from lightning_lrsched import ConfigError, build_scheduler
from lightning_lrsched.callbacks import GradientControl, LRLogger, LRSchedule

torch.set_num_threads(1)

# A full-batch linear regression with two parameter tensors (weight and bias).
_g = torch.Generator().manual_seed(0)
X = torch.randn(32, 3, generator=_g)
Y = X @ torch.tensor([1.5, -2.0, 0.5]) + 0.3 + 0.1 * torch.randn(32, generator=_g)
INIT = [torch.tensor([0.2, 0.1, -0.3]), torch.tensor([0.0])]


def loss_of(params: list[torch.Tensor]) -> torch.Tensor:
    weight, bias = params
    return ((X @ weight + bias - Y) ** 2).mean()


def gradients(params: list[torch.Tensor]) -> list[torch.Tensor]:
    leaves = [p.detach().clone().requires_grad_() for p in params]
    return list(torch.autograd.grad(loss_of(leaves), leaves))


def dot(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    dots = [torch.dot(x.reshape(-1), y.reshape(-1)) for x, y in zip(a, b, strict=True)]
    return float(torch.stack(dots).sum())


def run_ours(optimizer_class, options, config, steps=30, loss=loss_of, init=INIT):
    """The package's schedule on a torch optimizer: the rate every update used, final weights."""
    params = [p.clone().requires_grad_() for p in init]
    optimizer = optimizer_class(params, **options)
    scheduler = build_scheduler(optimizer, config, total_steps=steps)
    rates = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss(params).backward()
        optimizer.step()  # the step pre-hook sets the rate from this step's gradient
        rates.append(optimizer.param_groups[0]["lr"])
        scheduler.step()
    return rates, [p.detach() for p in params]


def sgd_hd(lr, beta, steps=30, momentum=0.0, nesterov=False, weight_decay=0.0, dampening=0.0):
    """SGD-HD as the paper writes it: alpha_t = alpha_{t-1} + beta g_t . u_{t-1},
    theta_t = theta_{t-1} - alpha_t u_t (u: the gradient, with the momentum of the authors'
    SGDHD: buffer, or g + momentum * buffer with Nesterov); u_0 = 0."""
    theta = [p.clone() for p in INIT]
    alpha, previous, buffer, rates = lr, None, None, []
    for _ in range(steps):
        g = [gi + weight_decay * ti for gi, ti in zip(gradients(theta), theta, strict=True)]
        if previous is not None:
            alpha = alpha + beta * dot(g, previous)
        rates.append(alpha)
        u = g
        if momentum:
            if buffer is None:
                buffer = [gi.clone() for gi in g]
            else:
                pairs = zip(buffer, g, strict=True)
                buffer = [momentum * b + (1 - dampening) * gi for b, gi in pairs]
            u = [gi + momentum * b for gi, b in zip(g, buffer, strict=True)] if nesterov else buffer
        theta = [t - alpha * ui for t, ui in zip(theta, u, strict=True)]
        previous = u
    return rates, theta


def adam_hd(lr, beta, steps=30, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False):
    """Adam-HD as the paper writes it: u_t = m_hat_t / (sqrt(v_hat_t) + eps),
    alpha_t = alpha_{t-1} + beta g_t . u_{t-1} (none at the first step). ``decoupled``: AdamW's
    decay theta *= 1 - alpha wd, outside the direction."""
    theta = [p.clone() for p in INIT]
    b1, b2 = betas
    m = [torch.zeros_like(t) for t in theta]
    v = [torch.zeros_like(t) for t in theta]
    alpha, previous, rates = lr, None, []
    for t in range(1, steps + 1):
        g = gradients(theta)
        if weight_decay and not decoupled:
            g = [gi + weight_decay * ti for gi, ti in zip(g, theta, strict=True)]
        if previous is not None:
            alpha = alpha + beta * dot(g, previous)
        rates.append(alpha)
        m = [b1 * mi + (1 - b1) * gi for mi, gi in zip(m, g, strict=True)]
        v = [b2 * vi + (1 - b2) * gi * gi for vi, gi in zip(v, g, strict=True)]
        pairs = zip(m, v, strict=True)
        u = [(mi / (1 - b1**t)) / ((vi / (1 - b2**t)).sqrt() + eps) for mi, vi in pairs]
        if decoupled:
            theta = [ti * (1 - alpha * weight_decay) for ti in theta]
        theta = [ti - alpha * ui for ti, ui in zip(theta, u, strict=True)]
        previous = u
    return rates, theta


def assert_trajectories(ours, reference, rel=1e-6):
    (rates, weights), (want_rates, want_weights) = ours, reference
    assert len(rates) == len(want_rates)
    for step, (got, want) in enumerate(zip(rates, want_rates, strict=True)):
        assert got == pytest.approx(want, rel=rel), f"rate of step {step}: {got} vs {want}"
    for got, want in zip(weights, want_weights, strict=True):
        torch.testing.assert_close(got, want, rtol=rel * 10, atol=1e-6)


SGD_CASES = {
    "plain": {},
    "momentum": {"momentum": 0.9},
    "nesterov": {"momentum": 0.5, "nesterov": True},
    "dampening+decay": {"momentum": 0.8, "dampening": 0.3, "weight_decay": 0.01},
}


@reference_test("hypergradient")
@pytest.mark.parametrize("case", SGD_CASES)
def test_sgd_matches_the_papers_sgd_hd(case):
    options = SGD_CASES[case]
    config = {"name": "hypergradient", "hypergrad_lr": 0.002}
    ours = run_ours(torch.optim.SGD, {"lr": 0.01, **options}, config)
    reference = sgd_hd(0.01, 0.002, **options)
    assert_trajectories(ours, reference)
    assert ours[0][-1] > 2 * ours[0][0]  # the rate moved: the comparison is not vacuous


ADAM_CASES = {
    "adam": (torch.optim.Adam, {}, {}),
    "adam+l2": (torch.optim.Adam, {"weight_decay": 0.05}, {"weight_decay": 0.05}),
    "adamw": (
        torch.optim.AdamW,
        {"weight_decay": 0.05},
        {"weight_decay": 0.05, "decoupled": True},
    ),
}


@reference_test("hypergradient")
@pytest.mark.parametrize("case", ADAM_CASES)
def test_adam_matches_the_papers_adam_hd(case):
    optimizer_class, options, reference_options = ADAM_CASES[case]
    config = {"name": "hypergradient", "hypergrad_lr": 1e-3}
    ours = run_ours(optimizer_class, {"lr": 0.01, **options}, config)
    reference = adam_hd(0.01, 1e-3, **reference_options)
    assert_trajectories(ours, reference)
    assert abs(ours[0][-1] - ours[0][0]) > 0.5 * ours[0][0]


# -- it does what it is for ------------------------------------------------------------------
CURVATURE = torch.tensor([1.0, 2.0, 4.0])  # f = sum(c w^2) / 2: SGD diverges for a rate > 0.5


def quadratic(params):
    (w,) = params
    return 0.5 * (CURVATURE * w * w).sum()


# optimizer, start (w = start * ones), rate far too small, rate too large, hypergrad_lr, and by how
# much the too-large rate falls in 60 steps at least (Adam's normalised steps shrink their
# overshoot by themselves near the minimum: its hypergradient is small there)
DIRECTION_CASES = [
    (torch.optim.SGD, 1.0, 0.004, 0.6, 1e-3, 0.2),
    (torch.optim.Adam, 1.0, 1e-4, 5.0, 3e-3, 0.02),
    (torch.optim.RMSprop, 10.0, 1e-3, 5.0, 1e-3, 0.2),  # the "delta" variant
]


@pytest.mark.parametrize(
    ("optimizer_class", "start", "small", "large", "beta", "drop"),
    DIRECTION_CASES,
    ids=[c[0].__name__ for c in DIRECTION_CASES],
)
def test_raises_a_too_small_rate_and_lowers_a_too_large_one(
    optimizer_class, start, small, large, beta, drop
):
    config = {"name": "hypergradient", "hypergrad_lr": beta}
    init = [start * torch.ones(3)]

    def train(lr, schedule=config):
        return run_ours(optimizer_class, {"lr": lr}, schedule, 60, quadratic, init)

    rates, weights = train(small)
    assert rates[-1] > 10 * small, rates[-1]
    fixed = train(small, {"name": "constant"})[1]
    assert quadratic(weights) < 0.1 * quadratic(fixed)  # and it trains faster for it

    rates, weights = train(large)
    assert rates[-1] < (1 - drop) * large, rates[-1]
    assert quadratic(weights) <= quadratic(train(large, {"name": "constant"})[1])


def test_variant_follows_the_optimizer():
    variants = {}
    for cls in (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW, torch.optim.RMSprop):
        optimizer = cls([torch.zeros(1, requires_grad=True)], lr=0.1)
        scheduler = build_scheduler(optimizer, {"name": "hypergradient"})
        variants[cls.__name__] = scheduler.description["variant"]
        assert scheduler.description["hypergrad_lr"] == (1e-6 if cls is torch.optim.SGD else 1e-8)
    assert variants == {"SGD": "sgd", "Adam": "adam", "AdamW": "adam", "RMSprop": "delta"}


def two_groups(lrs=(0.01, 0.02)):
    weight, bias = (p.clone().requires_grad_() for p in INIT)
    return [weight, bias], torch.optim.SGD(
        [{"params": [weight], "lr": lrs[0]}, {"params": [bias], "lr": lrs[1]}]
    )


def test_bounds_clip_each_group():
    params, optimizer = two_groups()
    config = {
        "name": "hypergradient",
        "hypergrad_lr": 0.01,
        "min_lr": 0.005,
        "max_lr": [0.05, 0.03],
    }
    scheduler = build_scheduler(optimizer, config)
    seen = []
    for _ in range(40):
        optimizer.zero_grad()
        loss_of(params).backward()
        optimizer.step()
        seen.append([g["lr"] for g in optimizer.param_groups])
        scheduler.step()
    assert {s[0] for s in seen[10:]} == {0.05} and max(s[1] for s in seen) == 0.03
    assert all(lr >= 0.005 for s in seen for lr in s)
    # each group follows its own dot product: the unclipped steps differ between the groups
    assert seen[1][0] != seen[1][1]


def test_warmup_ramps_to_the_base_rate_then_adapts_from_it():
    warmup, beta = 4, 0.002
    params, optimizer = two_groups()
    scheduler = build_scheduler(
        optimizer, {"name": "hypergradient", "hypergrad_lr": beta, "warmup": warmup}
    )
    rates, grads = [], []
    for _ in range(8):
        optimizer.zero_grad()
        loss_of(params).backward()
        grads.append([p.grad.clone() for p in params])
        optimizer.step()
        rates.append([g["lr"] for g in optimizer.param_groups])
        scheduler.step()
    assert rates[:warmup] == [[0.01 * t / warmup, 0.02 * t / warmup] for t in range(warmup)]
    # the first step after the warmup: the base rate moved by the hypergradient of that step
    # with the direction of the last warmup step (plain SGD: its gradient)
    for group in range(2):
        h = float(torch.dot(grads[warmup][group].reshape(-1), grads[warmup - 1][group].reshape(-1)))
        assert rates[warmup][group] == pytest.approx((0.01, 0.02)[group] + beta * h, rel=1e-6)
    assert rates[-1] != rates[warmup]


def test_without_gradients_the_rate_holds():
    optimizer = torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.1)
    scheduler = build_scheduler(optimizer, {"name": "hypergradient", "hypergrad_lr": 1.0})
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    assert scheduler.get_last_lr() == [0.1]


def test_state_round_trip_continues_exactly():
    """Stopped after 12 steps and restored into fresh objects (state through torch.save with
    weights_only), the rest of the curve is bitwise the uninterrupted one."""
    import io

    config = {"name": "hypergradient", "hypergrad_lr": 0.002, "warmup": 3}

    def train(params, optimizer, scheduler, steps):
        rates = []
        for _ in range(steps):
            optimizer.zero_grad()
            loss_of(params).backward()
            optimizer.step()
            rates.append([g["lr"] for g in optimizer.param_groups])
            scheduler.step()
        return rates

    params, optimizer = two_groups()
    full = train(params, optimizer, build_scheduler(optimizer, config), 30)

    params, optimizer = two_groups()
    scheduler = build_scheduler(optimizer, config)
    first = train(params, optimizer, scheduler, 12)
    buffer = io.BytesIO()
    torch.save({"p": [p.detach() for p in params], "s": scheduler.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    params, optimizer = two_groups()
    with torch.no_grad():
        for p, value in zip(params, saved["p"], strict=True):
            p.copy_(value)
    scheduler = build_scheduler(optimizer, config)
    scheduler.load_state_dict(saved["s"])
    assert first + train(params, optimizer, scheduler, 18) == full


# -- errors ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"hypergrad_lr": 0}, "scheduler.hypergrad_lr"),
        ({"hypergrad_lr": -1e-3}, "scheduler.hypergrad_lr"),
        ({"hypergrad_lr": math.nan}, "scheduler.hypergrad_lr"),
        ({"min_lr": 0.5}, "scheduler.min_lr"),
        ({"max_lr": 0.05}, "scheduler.max_lr"),
        ({"max_lr": [0.2, 0.3]}, "scheduler.max_lr"),
        ({"variant": "adam"}, "scheduler.variant"),
        ({"variant": "lbfgs"}, "scheduler.variant"),
    ],
)
def test_bad_input_is_a_config_error(config, key):
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    with pytest.raises(ConfigError) as raised:
        build_scheduler(optimizer, {"name": "hypergradient", **config}, total_steps=10)
    assert str(raised.value).startswith(key + "="), str(raised.value)
    assert "\n" not in str(raised.value)


def test_not_nestable():
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    config = {"name": "sequence", "phases": [{"name": "hypergradient"}]}
    with pytest.raises(ConfigError, match=r"phases\[0\].name=.*cannot be nested"):
        build_scheduler(optimizer, config, total_steps=10)


def test_a_closure_step_is_refused_in_plain_torch():
    w = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([w], lr=0.1)
    build_scheduler(optimizer, {"name": "hypergradient"})

    def closure():
        optimizer.zero_grad()
        loss = ((w - 1) ** 2).sum()
        loss.backward()
        return loss

    with pytest.raises(RuntimeError, match=r"without a closure"):
        optimizer.step(closure)


# -- Lightning -------------------------------------------------------------------------------
LIGHTNING_CONFIG = {"name": "hypergradient", "hypergrad_lr": 0.005, "warmup": 2}
OPTIMIZER = {"name": "sgd", "lr": 0.01, "param_groups": [{"params": r"^net\.2\.", "lr": 0.02}]}


def plain_torch_rates(epochs: int) -> list[tuple[float, ...]]:
    """The same module, data and schedule in a plain torch loop (backward, step, schedule)."""
    pl.seed_everything(0, verbose=False)
    module = TinyModule(None, optimizer=OPTIMIZER)
    from lightning_lrsched.lightning import build_optimizer

    optimizer = build_optimizer(module, OPTIMIZER)
    loader = DataLoader(regression_data(module.n), batch_size=module.batch_size)
    scheduler = build_scheduler(optimizer, LIGHTNING_CONFIG, total_steps=epochs * len(loader))
    rates = []
    for _ in range(epochs):
        for x, y in loader:
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(module.net(x), y).backward()
            optimizer.step()
            rates.append(tuple(g["lr"] for g in optimizer.param_groups))
            scheduler.step()
    return rates


@pytest.mark.parametrize("via", ["helper", "callback"])
def test_lightning_adapts_with_the_steps_own_gradient_and_logs_that_rate(via, tmp_path):
    """Every step's rate in a Lightning fit is the one plain torch sets from that step's
    gradient (not the previous step's, which is all a pre-hook would see under Lightning's
    closure), and ``LRLogger`` logs it, even when listed before the schedule's callback."""
    epochs = 2
    pl.seed_everything(0, verbose=False)
    recorder, probe = RateRecorder(), PointsLogger()
    callbacks = [LRLogger(plan=False), recorder]
    if via == "helper":
        module = TinyModule(LIGHTNING_CONFIG, optimizer=OPTIMIZER)
    else:
        module = TinyModule(None, optimizer=OPTIMIZER)
        callbacks.append(LRSchedule(LIGHTNING_CONFIG))
    run = trainer(tmp_path, callbacks, max_epochs=epochs, logger=[probe], log_every_n_steps=1)
    run.fit(module)
    assert sum(isinstance(cb, GradientControl) for cb in run.callbacks) == 1
    assert isinstance(run.callbacks[0], GradientControl)

    expected = plain_torch_rates(epochs)
    assert [rates for _, rates, _ in recorder.rates] == expected
    logged = [
        (step, (m["lr/SGD/pg0"], m["lr/SGD/default"]))
        for step, m in probe.points
        if "lr/SGD/pg0" in m
    ]
    assert logged == [(step, rates) for step, rates, _ in recorder.rates]
    assert len({rates for rates in expected[2:]}) > 10  # it adapts: the rates move
