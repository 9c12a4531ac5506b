"""Generators and critics, chosen by name (as in the pix2pix/CycleGAN reference code).

  build_generator("unet")                  the pix2pix U-Net, layer for layer the PyTorch original
  build_generator("resunet")               a U-Net whose levels are residual blocks
  build_generator("backbone:resnet50")     a U-Net decoder on a keras.applications encoder
  build_generator("backbone:efficientnet_lite0")  the same on EfficientNet-Lite0 (_lite1, _lite2 too), weights offline
  build_critic("patchgan")                 the 70x70 PatchGAN
  build_critic("projected")                patch critics on frozen ImageNet EfficientNet-Lite features

Generators map normalised L (B, S, S, 1) to normalised ab (B, S, S, 2); critics map Lab (L and ab
concatenated, B, S, S, 3) to a grid of logits. Outputs are float32 under any mixed-precision policy.
"""
from colorgan.errors import ColorganError
from colorgan.models.backbone import BACKBONES, backbone_unet, perceptual_features
from colorgan.models.patchgan import patchgan
from colorgan.models.projected import projected
from colorgan.models.resunet import resunet
from colorgan.models.unet import unet

GENERATORS = {"unet": unet, "resunet": resunet}
CRITICS = {"patchgan": patchgan, "projected": projected}


def all_layers(layer):
    """The layer and every layer nested in it (a backbone's encoder is a model inside the model)."""
    return [layer] + [inner for child in getattr(layer, "layers", []) for inner in all_layers(child)]


def generator_names():
    return sorted(GENERATORS) + [f"backbone:{b}" for b in BACKBONES]


def _call_builder(kind, builder, name, image_size, options):
    try:
        return builder(image_size=image_size, **options)
    except TypeError as e:
        raise ColorganError(f"bad option for {kind} {name!r}: {e}") from None


def build_generator(name, image_size=256, **options):
    """A generator by name: 'unet', 'resunet' or 'backbone:<name>' with a name from BACKBONES."""
    if name.startswith("backbone:"):
        return _call_builder("generator", lambda **kw: backbone_unet(name.split(":", 1)[1], **kw),
                             name, image_size, options)
    if name not in GENERATORS:
        raise ColorganError(f"unknown generator {name!r}: use one of {', '.join(generator_names())}")
    return _call_builder("generator", GENERATORS[name], name, image_size, options)


def build_critic(name, image_size=256, **options):
    """A critic by name: 'patchgan' or 'projected'."""
    if name not in CRITICS:
        raise ColorganError(f"unknown critic {name!r}: use one of {', '.join(CRITICS)}")
    return _call_builder("critic", CRITICS[name], name, image_size, options)
