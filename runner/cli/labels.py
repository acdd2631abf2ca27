"""The labels a runner offers: what it was registered with, and the capability labels of the
tools it has (`codemod` when the Codemod CLI is found).

The control plane refuses a claim offering a label the runner was not registered with (a
runner token must not reach runs meant for other machines), so a capability is offered only
when the registration allows it, and a registered capability whose tool is missing is not
offered (its runs would fail here); each case is said in one line at start.
"""

from __future__ import annotations

from collections.abc import Sequence

CODEMOD_LABEL = "codemod"
"""The label a runner with the Codemod CLI serves: runs with codemod steps require it."""


def offered_labels(configured: Sequence[str], registered: Sequence[str],
                   has_codemod: bool) -> tuple[tuple[str, ...], list[str]]:
    """The labels to offer in claims, and warnings about the ones left out.

    `configured`: `--labels` or the config's; `registered`: what `ferry register` recorded
    (empty: the server accepts any label from this runner)."""
    labels = list(dict.fromkeys(configured))
    warnings: list[str] = []
    if has_codemod and CODEMOD_LABEL not in labels:
        if not registered or CODEMOD_LABEL in registered:
            labels.append(CODEMOD_LABEL)
        else:
            warnings.append(
                f"the Codemod CLI is found, but this runner was registered without the "
                f"'{CODEMOD_LABEL}' label: runs with codemod steps go to other runners "
                f"(register it again with --labels {','.join([*registered, CODEMOD_LABEL])})")
    elif not has_codemod and CODEMOD_LABEL in labels:
        labels.remove(CODEMOD_LABEL)
        warnings.append(
            f"the '{CODEMOD_LABEL}' label is not offered: the Codemod CLI is not found "
            "(FERRY_CODEMOD_BIN, runner.tools.codemod or codemod on PATH); runs with codemod "
            "steps go to other runners")
    return tuple(labels), warnings


def registration_labels(requested: Sequence[str], has_codemod: bool) -> list[str]:
    """The labels `ferry register` records: the requested ones, plus `codemod` when the
    Codemod CLI is found and labels are requested (with none, any label may be offered)."""
    labels = list(dict.fromkeys(requested))
    if labels and has_codemod and CODEMOD_LABEL not in labels:
        labels.append(CODEMOD_LABEL)
    return labels
