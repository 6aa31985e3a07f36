"""`cityseg hub push CHECKPOINT --repo USER/NAME` and `cityseg hub save CHECKPOINT --out DIR`."""

from __future__ import annotations

from pathlib import Path

FILES = "model.safetensors (weights), config.json (network, normalisation, classes) and README.md"


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "hub",
        help="share a model on the Hugging Face Hub (load it with --pretrained hf:USER/NAME)",
        description=f"Write a checkpoint as {FILES} (the model card), and push it to a model "
        "repository on the Hugging Face Hub. Needs the huggingface_hub package "
        "(pip install 'cityseg[hub]').",
    )
    commands = parser.add_subparsers(dest="hub_command", metavar="HUB_COMMAND")
    parser.set_defaults(run=lambda args: parser.print_help())

    push = commands.add_parser(
        "push",
        help="upload a checkpoint with its model card to a Hub repository",
        description=f"Create (or update) the model repository USER/NAME with {FILES}, in one "
        "commit. Log in first with `hf auth login` (or set HF_TOKEN).",
    )
    _add_common(push)
    push.add_argument("--repo", required=True, metavar="USER/NAME", help="the Hub repository")
    push.add_argument("--private", action="store_true", help="create the repository private")
    push.set_defaults(run=run_push)

    save = commands.add_parser(
        "save",
        help="write the folder a push uploads, without uploading it",
        description=f"Write {FILES} into --out, as `cityseg hub push` would upload them. The "
        "folder loads wherever a checkpoint does (predict, evaluate, export, train.init_from).",
    )
    _add_common(save)
    save.add_argument("--out", type=Path, required=True, metavar="DIR", help="the folder")
    save.add_argument("--repo", metavar="USER/NAME", help="the repository the card names")
    save.set_defaults(run=run_save)


def _add_common(parser) -> None:
    parser.add_argument(
        "checkpoint", type=Path, help="checkpoint .pt written by cityseg train, or its run folder"
    )
    parser.add_argument(
        "--eval",
        type=Path,
        metavar="DIR",
        help="a `cityseg evaluate` output folder: its per-class scores go into the model card",
    )


def run_save(args) -> int:
    from cityseg.share.hub import save_model_folder

    written = save_model_folder(args.checkpoint, args.out, args.repo, args.eval)
    print(f"wrote {', '.join(str(path) for path in written)}")
    return 0


def run_push(args) -> int:
    from cityseg.share.hub import push_model

    url = push_model(args.checkpoint, args.repo, args.private, args.eval)
    print(
        f"pushed {args.checkpoint} to {args.repo} ({url}); load it with --pretrained hf:{args.repo}"
    )
    return 0
