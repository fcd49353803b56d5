"""The plain RQ baseline's job of `bench/sync.py`: one per item, doing nothing, importing nothing."""


def noop(n: int) -> None:
    return None
