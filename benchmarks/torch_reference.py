"""The seeds' pix2pix colorizer in PyTorch, as the original (junyanz/pytorch-CycleGAN-and-pix2pix) has it.

This is the yardstick of `benchmarks/run.py --compare`: the same architecture and parameter counts as
`colorgan.models.unet` / `patchgan` at 256 px (generator 54,409,858, critic 2,765,633 for L -> ab),
the same losses (vanilla GAN on logits, critic loss halved, + 100 x L1) and the same optimiser
(Adam, lr 2e-4, betas 0.5 / 0.999), and the original's train step, `Pix2PixModel.optimize_parameters`:
one generator forward per step, whose output the critic sees detached.

The original runs float32 NCHW tensors, PyTorch's default; `mode` picks how this copy runs (MODES):

    float32                  float32, NCHW (the original as it is)
    channels_last            float32, weights and activations in NHWC memory (torch.channels_last)
    bfloat16_channels_last   channels_last, forward passes and losses under
                             torch.autocast(device, dtype=torch.bfloat16); weights, gradients and the
                             Adam state stay float32 (bfloat16 needs no loss scaling)
    <any of them>_compile    the same, both networks through torch.compile (TorchInductor: forward and
                             backward fused into generated kernels) and Adam's fused kernel (fused=True).
                             The first step compiles (minutes on a CPU); where torch.compile cannot run
                             (on a CPU it needs a C++ compiler) the step runs eager and `compile_note`
                             says why

`applicable_modes()` lists the modes worth timing on this machine: the bfloat16 ones where the CPU has
bfloat16 units (avx512_bf16 or amx_bf16 in /proc/cpuinfo) or the GPU runs bfloat16, and the _compile ones
where torch.compile works. `GANStep` is the train step itself, which torch_lite0.py reuses for colorgan's
EfficientNet-Lite0 U-Net.
Needs torch (the `bench` extra); nothing in the colorgan package imports this file.

    python benchmarks/torch_reference.py      # prints the parameter counts and the applicable modes
"""
import contextlib
import functools

import torch
from torch import nn

EAGER_MODES = {
    "float32": dict(channels_last=False, autocast=None),
    "channels_last": dict(channels_last=True, autocast=None),
    "bfloat16_channels_last": dict(channels_last=True, autocast=torch.bfloat16),
}
MODES = {**{m: dict(o, compile=False) for m, o in EAGER_MODES.items()},
         **{f"{m}_compile": dict(o, compile=True) for m, o in EAGER_MODES.items()}}
PRECISION = {m: "float32" if o["autocast"] is None else "bfloat16" for m, o in MODES.items()}


def has_bf16_hardware(device="cpu"):
    """bfloat16 arithmetic units: AVX512-BF16 or AMX on the CPU (/proc/cpuinfo flags), or a GPU that has them."""
    if torch.device(device).type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return bool({"avx512_bf16", "amx_bf16"} & set(flags))


@functools.cache
def compile_problem(device="cpu"):
    """None where torch.compile works on `device`, else why not. A one-line function is compiled and run:
    on a CPU that needs a C++ compiler, on a GPU Triton; a few seconds, once per process."""
    try:
        torch.compile(lambda x: x * 2.0 + 1.0)(torch.ones(4, device=device))
        return None
    except Exception as e:  # the missing compiler shows up as one of several errors, depending on the version
        first_line = str(e).strip().split("\n")[0][:160]
        return f"{type(e).__name__}: {first_line}"


def compiled(module, mode, device="cpu"):
    """`module` as `mode` runs it, through torch.compile in the _compile modes where that works here, and
    a note: None, or why it runs eager after all. The parameters stay the module's."""
    if not MODES[mode]["compile"]:
        return module, None
    problem = compile_problem(torch.device(device).type)
    if problem:
        return module, f"torch.compile does not work here ({problem}): ran eager"
    return torch.compile(module), None


def applicable_modes(device="cpu"):
    """The modes that can be the fastest here: bfloat16 autocast only where there is bf16 hardware,
    torch.compile only where it works."""
    return [m for m, o in MODES.items() if (PRECISION[m] == "float32" or has_bf16_hardware(device))
            and (not o["compile"] or compile_problem(torch.device(device).type) is None)]


def autocast(mode, device):
    """The mode's autocast context for forward passes (a no-op for the float32 modes)."""
    dtype = MODES[mode]["autocast"]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def to_mode(x, mode):
    """A module or an NCHW tensor in the mode's memory format (channels_last: NHWC in memory)."""
    if not MODES[mode]["channels_last"]:
        return x.contiguous() if isinstance(x, torch.Tensor) else x
    return x.to(memory_format=torch.channels_last)


def init_weights(module, gain=0.02):
    """pix2pix's `init_type=normal`: convs from N(0, 0.02), BatchNorm gamma from N(1, 0.02), biases 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, gain)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, gain)
        nn.init.zeros_(module.bias)


class UnetSkipConnectionBlock(nn.Module):
    """One level of the U-Net: down conv, the inner levels, up conv, and the skip (concatenation)."""

    def __init__(self, outer_nc, inner_nc, input_nc=None, submodule=None, outermost=False, innermost=False,
                 use_dropout=False):
        super().__init__()
        self.outermost = outermost
        input_nc = outer_nc if input_nc is None else input_nc
        # Bias only where no BatchNorm follows (the original's use_bias for BatchNorm2d); the outermost down
        # conv has none either, though no norm follows it.
        down_conv = nn.Conv2d(input_nc, inner_nc, 4, 2, 1, bias=False)
        if outermost:
            up = [nn.ReLU(True), nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, 2, 1), nn.Tanh()]
            layers = [down_conv, submodule] + up
        elif innermost:
            up = [nn.ReLU(True), nn.ConvTranspose2d(inner_nc, outer_nc, 4, 2, 1, bias=False),
                  nn.BatchNorm2d(outer_nc)]
            layers = [nn.LeakyReLU(0.2, True), down_conv] + up
        else:
            down = [nn.LeakyReLU(0.2, True), down_conv, nn.BatchNorm2d(inner_nc)]
            up = [nn.ReLU(True), nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, 2, 1, bias=False),
                  nn.BatchNorm2d(outer_nc)]
            layers = down + [submodule] + up + ([nn.Dropout(0.5)] if use_dropout else [])
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """pix2pix `unet_256`: 8 levels, 64 filters, dropout in the three 512-wide levels below the innermost."""

    def __init__(self, input_nc=1, output_nc=2, num_downs=8, ngf=64, use_dropout=True):
        super().__init__()
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, innermost=True)
        for _ in range(num_downs - 5):
            block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, submodule=block, use_dropout=use_dropout)
        block = UnetSkipConnectionBlock(ngf * 4, ngf * 8, submodule=block)
        block = UnetSkipConnectionBlock(ngf * 2, ngf * 4, submodule=block)
        block = UnetSkipConnectionBlock(ngf, ngf * 2, submodule=block)
        self.model = UnetSkipConnectionBlock(output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True)

    def forward(self, x):
        return self.model(x)


class NLayerDiscriminator(nn.Module):
    """The 70x70 PatchGAN: each output logit judges one patch of the Lab image."""

    def __init__(self, input_nc=3, ndf=64, n_layers=3):
        super().__init__()
        seq = [nn.Conv2d(input_nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < n_layers else 1
            seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1, bias=False), nn.BatchNorm2d(ndf * mult),
                    nn.LeakyReLU(0.2, True)]
        seq += [nn.Conv2d(ndf * mult, 1, 4, 1, 1)]
        self.model = nn.Sequential(*seq)

    def forward(self, x):
        return self.model(x)


def count_parameters(module):
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


class GANStep:
    """A generator, a critic, their Adam optimisers and one pix2pix step (`train_step`, the original's
    `optimize_parameters`) in one of MODES. `generator_groups`: Adam's parameter groups for the generator
    (default: all its parameters at `lr`), so that a pretrained encoder can learn at its own rate."""

    def __init__(self, generator, critic, device="cpu", mode="float32", l1_weight=100.0, lr=2e-4,
                 generator_groups=None):
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
        self.device, self.mode, self.l1_weight = torch.device(device), mode, l1_weight
        self.generator = to_mode(generator.to(self.device), mode)
        self.critic = to_mode(critic.to(self.device), mode)
        # The networks as the step calls them.
        self.run_generator, self.compile_note = compiled(self.generator, mode, self.device)
        self.run_critic, _ = compiled(self.critic, mode, self.device)
        self.gan_loss = nn.BCEWithLogitsLoss()
        self.l1_loss = nn.L1Loss()
        # Adam's fused kernel needs no compiler (CPUs since torch 2.4): the _compile modes take it anyway.
        adam = dict(lr=lr, betas=(0.5, 0.999), fused=True if MODES[mode]["compile"] else None)
        self.g_opt = torch.optim.Adam(generator_groups or self.generator.parameters(), **adam)
        self.d_opt = torch.optim.Adam(self.critic.parameters(), **adam)

    def _gan(self, logits, real):
        logits = logits.float()  # the losses in float32 under autocast too
        return self.gan_loss(logits, torch.full_like(logits, 1.0 if real else 0.0))

    def prepare(self, x):
        """An NCHW batch on the model's device, in its mode's memory format."""
        return to_mode(x.to(self.device), self.mode)

    def train_step(self, l, ab):
        """One adversarial step on NCHW L (B, 1, S, S) and ab (B, 2, S, S); returns the losses as floats."""
        self.generator.train()
        self.critic.train()
        l, ab = self.prepare(l), self.prepare(ab)
        with autocast(self.mode, self.device):
            fake_ab = self.run_generator(l)
            # Critic: real and (detached) fake pairs, loss halved.
            self.critic.requires_grad_(True)
            self.d_opt.zero_grad()
            loss_fake = self._gan(self.run_critic(torch.cat([l, fake_ab.detach()], 1)), False)
            loss_real = self._gan(self.run_critic(torch.cat([l, ab], 1)), True)
            loss_d = 0.5 * (loss_fake + loss_real)
        loss_d.backward()
        self.d_opt.step()
        # Generator: fool the (frozen) critic and stay close to the real ab in L1.
        self.critic.requires_grad_(False)
        self.g_opt.zero_grad()
        with autocast(self.mode, self.device):
            loss_gan = self._gan(self.run_critic(torch.cat([l, fake_ab], 1)), True)
            loss_l1 = self.l1_loss(fake_ab.float(), ab)
            loss_g = loss_gan + self.l1_weight * loss_l1
        loss_g.backward()
        self.g_opt.step()
        # .item() waits for the step to finish, on a GPU too.
        return {"critic/loss": loss_d.item(), "generator/loss": loss_g.item(), "generator/l1": loss_l1.item()}

    @torch.no_grad()
    def predict_ab(self, l):
        """Inference: the generator alone in eval mode (BatchNorm running statistics, no dropout)."""
        self.generator.eval()
        with autocast(self.mode, self.device):
            return self.run_generator(self.prepare(l)).float()


class Pix2Pix(GANStep):
    """The seeds' pix2pix: `UnetGenerator` and `NLayerDiscriminator` as the original initialises them."""

    def __init__(self, image_size=256, ngf=64, ndf=64, num_downs=8, l1_weight=100.0, lr=2e-4, device="cpu",
                 mode="float32"):
        self.image_size = image_size
        generator, critic = UnetGenerator(ngf=ngf, num_downs=num_downs), NLayerDiscriminator(ndf=ndf)
        generator.apply(init_weights)
        critic.apply(init_weights)
        super().__init__(generator, critic, device, mode, l1_weight, lr)


if __name__ == "__main__":
    model = Pix2Pix()
    print(f"generator {count_parameters(model.generator):,}  critic {count_parameters(model.critic):,}")
    print(f"modes here: {', '.join(applicable_modes())} (all: {', '.join(MODES)})")
