"""tools/convert_torchreid.py's work: a PyTorch checkpoint into a backbone weights file (the layout of
`--format=backbone`) and, for --head=fc512, a head weights file."""

from __future__ import annotations

from reid_tf import backbones, torch_zoo

SHAPE = (256, 128, 3)  # any: the converted weights serve every input size
PROBE = (64, 32, 3)  # the size candidates are built at to name a checkpoint's architecture


def convert(checkpoint: str, backbone: str, output: str, head: str = "none",
            head_output: str | None = None) -> list[str]:
    """Write `output` (and `head_output`); returns what was done, one line each."""
    if head == "fc512" and not head_output:
        raise torch_zoo.ZooError("--head=fc512 needs --head_output=FILE for the head's weights")
    state, dropped = torch_zoo.clean(torch_zoo.read_checkpoint(checkpoint))
    model = backbones.plain_backbone(backbone, SHAPE)
    try:
        unused = torch_zoo.load_state(model, backbone, state, checkpoint)
    except torch_zoo.ZooError:
        found = torch_zoo.guess(state)
        if found in (None, backbone) or any(torch_zoo.mismatches(backbones.plain_backbone(found, PROBE), found, state)):
            found = None
        what = f"holds {found}" if found else "is no torchreid OSNet nor torchvision ResNet-50 (its names differ)"
        raise torch_zoo.ZooError(f"{checkpoint} {what}, not --backbone={backbone}"
                                 + (f": pass --backbone={found}" if found else "")) from None
    lines = []
    fc = [k for k in unused if k.startswith(torch_zoo.FC)]
    if head == "fc512":
        torch_zoo.save_head_weights(head_output, torch_zoo.fc_arrays(state))
        lines.append(f"wrote {head_output}: the 512-d fc head (--head=fc512 --head_weights={head_output})")
    elif fc:
        dropped += fc
    others = [k for k in unused if not k.startswith(torch_zoo.FC)]
    if others:
        raise torch_zoo.ZooError(f"{checkpoint} has weights {backbone} does not: {', '.join(others[:3])}")
    backbones.save_backbone_weights(model, backbone, SHAPE, output, record_size=False)
    if dropped:
        tops = [k.split(".")[0] for k in dropped]
        counts = {top: tops.count(top) for top in sorted(set(tops))}
        parts = ", ".join(f"{top} ({n} weights)" for top, n in counts.items())
        lines.append(f"left out {parts}: training-only" + ("; --head=fc512 keeps fc" if fc and head != "fc512" else ""))
    lines.append(f"wrote {output}: {backbone}, {len(torch_zoo.mapping(model, backbone))} weights mapped by name"
                 f" (--backbone={backbone} --backbone_weights={output})")
    return lines
