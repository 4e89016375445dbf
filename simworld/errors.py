"""Errors a user can cause. The CLI turns these into one clear message and exit code 2."""


class SimworldError(Exception):
    """A problem with the user's input (scenario, data file, model server), not a bug."""


class ScenarioError(SimworldError):
    """A scenario file that does not validate; `problems` holds one line per problem."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


class DataError(SimworldError):
    """A missing or malformed data file (catalog, ratings)."""
