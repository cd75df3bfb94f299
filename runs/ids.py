"""Entity ids: a type prefix plus a ULID, so ids sort by creation time and say what they name."""

from ulid import ULID


def new_run_id() -> str:
    return f"run_{ULID()}"


def new_step_id() -> str:
    return f"step_{ULID()}"
