# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""`unimedvl push`: publish a converted checkpoint and/or the demo Space on the Hugging Face Hub.

    unimedvl push ./UniMedVL-hf --repo-id me/UniMedVL-hf --dry-run        # list what would be uploaded
    unimedvl push ./UniMedVL-hf --repo-id me/UniMedVL-hf --space-id me/UniMedVL-demo --private

The model repository gets the whole checkpoint folder (weights, config, custom code, processor and pipeline files);
without a README.md the model card is written into the folder first (as `unimedvl card` would). The Space gets the
app (`spaces/`) with the `unimedvl` package source next to it, and its `UNIMEDVL_MODEL` variable set to the model it
serves. Repositories are created when missing (`--private` for new ones). `--dry-run` lists the files with their sizes
and changes nothing, locally or on the Hub. The token is `--token`, else `HF_TOKEN`, else the one saved by
`hf auth login`.
"""

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import CommandError


# Never uploaded from a checkpoint folder (on top of huggingface_hub's own `.git` / `.cache/huggingface`).
IGNORE_PATTERNS = [
    "__pycache__",
    "__pycache__/*",
    "*/__pycache__/*",
    "*.pyc",
    ".DS_Store",
    "*/.DS_Store",
    ".ipynb_checkpoints/*",
]
MODEL_REQUIRED_FILES = ("config.json",)


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "push",
        help="upload a converted checkpoint and/or the demo Space to the Hugging Face Hub",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "checkpoint", metavar="CHECKPOINT", nargs="?", help="converted checkpoint folder (with --repo-id)"
    )
    parser.add_argument("--repo-id", help="model repository to upload CHECKPOINT to, e.g. me/UniMedVL-hf")
    parser.add_argument("--space-id", help="Space repository for the demo, e.g. me/UniMedVL-demo")
    parser.add_argument(
        "--space-model", help="model the Space serves (default: --repo-id, else $UNIMEDVL_MODEL, else the default)"
    )
    parser.add_argument("--private", action="store_true", help="create missing repositories as private")
    parser.add_argument("--dry-run", action="store_true", help="list what would be uploaded; change nothing")
    parser.add_argument("--token", help="Hugging Face token (default: $HF_TOKEN or the saved login)")
    parser.add_argument("--commit-message", help="commit message (default: 'Upload with unimedvl push')")
    parser.set_defaults(func=run)
    return parser


@dataclass
class UploadPlan:
    """One repository's upload: where from, and the files (path in the repo → size in bytes)."""

    repo_id: str
    repo_type: str  # "model" | "space"
    folder: Path | None  # None: built at upload time (the Space)
    files: dict[str, int]
    notes: list[str] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)


def run(args: argparse.Namespace) -> None:
    if args.checkpoint and not args.repo_id:
        raise CommandError("CHECKPOINT needs --repo-id: the model repository to upload it to.")
    if args.repo_id and not args.checkpoint:
        raise CommandError("--repo-id needs the CHECKPOINT folder to upload.")
    if not args.repo_id and not args.space_id:
        raise CommandError("nothing to push: give CHECKPOINT --repo-id ID and/or --space-id ID.")
    for option, repo_id in (("--repo-id", args.repo_id), ("--space-id", args.space_id)):
        if repo_id:
            check_repo_id(option, repo_id)

    plans = []
    if args.repo_id:
        plans.append(plan_model_upload(Path(args.checkpoint), args.repo_id))
    if args.space_id:
        from ..hub import resolve_model

        plans.append(plan_space_upload(args.space_id, args.space_model or resolve_model(args.repo_id)))

    for plan in plans:
        print_plan(plan, args.private)
    if args.dry_run:
        print("Dry run: nothing was written, created or uploaded.")
        return
    for plan in plans:
        upload(plan, private=args.private, token=args.token, message=args.commit_message or "Upload with unimedvl push")


def check_repo_id(option: str, repo_id: str) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise CommandError(f"{option}: {error}") from None
    if "/" not in repo_id:
        raise CommandError(f"{option}: expected 'owner/name', got {repo_id!r}.")


def plan_model_upload(checkpoint: Path, repo_id: str) -> UploadPlan:
    """The checkpoint folder's files, checked for what a Hub model repository needs."""
    from huggingface_hub.hf_api import DEFAULT_IGNORE_PATTERNS
    from huggingface_hub.utils import filter_repo_objects

    if not checkpoint.is_dir():
        raise CommandError(f"CHECKPOINT: {checkpoint} is not a folder.")
    missing = [name for name in MODEL_REQUIRED_FILES if not (checkpoint / name).is_file()]
    if missing:
        raise CommandError(
            f"CHECKPOINT: {checkpoint} has no {', '.join(missing)}; convert it first with `unimedvl convert`."
        )
    paths = sorted(path.relative_to(checkpoint).as_posix() for path in checkpoint.rglob("*") if path.is_file())
    kept = list(filter_repo_objects(paths, ignore_patterns=IGNORE_PATTERNS + list(DEFAULT_IGNORE_PATTERNS)))
    plan = UploadPlan(repo_id, "model", checkpoint, {name: (checkpoint / name).stat().st_size for name in kept})
    if "README.md" not in plan.files:
        plan.notes.append("README.md: no model card yet; it is generated into CHECKPOINT before the upload")
    if not any(name.endswith(".py") for name in plan.files):
        plan.notes.append("no custom code (*.py): `trust_remote_code=True` loading will not work from this repository")
    if "model_index.json" not in plan.files:
        plan.notes.append(
            "no diffusers pipeline files (model_index.json): DiffusionPipeline.from_pretrained needs them"
        )
    return plan


def plan_space_upload(space_id: str, model_id: str) -> UploadPlan:
    """The Space's files: the app folder plus the package source (see `unimedvl.spaces.deploy`)."""
    from ..spaces.deploy import space_sources

    files = {
        name: source.stat().st_size if isinstance(source, Path) else len(source.encode("utf-8"))
        for name, source in space_sources(model_id).items()
    }
    plan = UploadPlan(space_id, "space", None, files, variables={"UNIMEDVL_MODEL": model_id})
    plan.notes.append(f"serves {model_id} (README `models:` and the UNIMEDVL_MODEL variable)")
    return plan


def print_plan(plan: UploadPlan, private: bool, out=None) -> None:
    out = out or sys.stdout
    source = plan.folder if plan.folder is not None else "the installed app and package"
    kind = "Space (gradio)" if plan.repo_type == "space" else "Model repository"
    visibility = "private" if private else "public"
    print(f"{kind} {plan.repo_id} ({visibility} if created) <- {source}", file=out)
    for name, size in plan.files.items():
        print(f"  {format_size(size):>10}  {name}", file=out)
    print(f"  {len(plan.files)} files, {format_size(sum(plan.files.values()))}", file=out)
    for key, value in plan.variables.items():
        print(f"  variable {key}={value}", file=out)
    for note in plan.notes:
        print(f"  note: {note}", file=out)


def format_size(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def upload(plan: UploadPlan, private: bool, token: str | None, message: str) -> None:
    """Create the repository if needed and upload the plan's files in one commit."""
    import tempfile

    from huggingface_hub import HfApi

    api = HfApi(token=token)
    with hub_errors(plan.repo_id):
        url = api.create_repo(
            plan.repo_id,
            repo_type=plan.repo_type,
            private=private,
            exist_ok=True,
            space_sdk="gradio" if plan.repo_type == "space" else None,
        )
        if plan.repo_type == "model":
            if "README.md" not in plan.files:
                from ..model_cards import build_model_card

                build_model_card(plan.folder, repo_id=plan.repo_id).save(plan.folder / "README.md")
                print(f"Wrote the model card {plan.folder / 'README.md'}")
            api.upload_folder(
                repo_id=plan.repo_id,
                folder_path=plan.folder,
                repo_type="model",
                commit_message=message,
                ignore_patterns=list(IGNORE_PATTERNS),
            )
        else:
            from ..spaces.deploy import build_space_folder

            with tempfile.TemporaryDirectory(prefix="unimedvl-space-") as staging:
                build_space_folder(staging, plan.variables.get("UNIMEDVL_MODEL"))
                api.upload_folder(repo_id=plan.repo_id, folder_path=staging, repo_type="space", commit_message=message)
            for key, value in plan.variables.items():
                api.add_space_variable(plan.repo_id, key, value)
    print(f"Uploaded {len(plan.files)} files to {url}")


class hub_errors:
    """Context manager turning Hub and network failures into one-line `CommandError`s (no traceback)."""

    def __init__(self, repo_id: str):
        self.repo_id = repo_id

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if error is None or isinstance(error, (CommandError, KeyboardInterrupt)):
            return False
        raise CommandError(describe_hub_error(error, self.repo_id)) from error


def describe_hub_error(error: BaseException, repo_id: str) -> str:
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError, OfflineModeIsEnabled

    endpoint = os.environ.get("HF_ENDPOINT") or constants.ENDPOINT
    if isinstance(error, OfflineModeIsEnabled):
        return "cannot push while HF_HUB_OFFLINE is set; unset it (or use --dry-run to only list the files)."
    if isinstance(error, LocalTokenNotFoundError):
        return "no Hugging Face token: pass --token, set HF_TOKEN, or run `hf auth login`."
    if isinstance(error, HfHubHTTPError):
        status = getattr(getattr(error, "response", None), "status_code", None)
        if status in (401, 403):
            return f"the Hub refused access to {repo_id} (HTTP {status}): check that your token can write there."
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return f"the Hub rejected the upload to {repo_id}: {first_line}"
    if isinstance(error, OSError) or type(error).__module__.split(".")[0] in (
        "httpx",
        "httpx2",
        "httpcore",
        "requests",
    ):
        return (
            f"could not reach the Hugging Face Hub at {endpoint} ({type(error).__name__}: {error}). Check the network "
            "connection (or use --dry-run to only list the files)."
        )
    return f"pushing to {repo_id} failed: {type(error).__name__}: {error}"
