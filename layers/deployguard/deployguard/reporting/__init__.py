"""Deployment reports: presentation of the read models (Markdown, self-contained HTML with SVG, JSON).

Used by the report-writer Lambda (written to S3 when a deployment ends) and by
``deployguard report``. Rendering only: the data comes from :mod:`deployguard.readmodels`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from deployguard.readmodels import DeploymentHistory

ReportFormat = Literal["md", "html", "json"]
FORMATS: tuple[ReportFormat, ...] = ("md", "html", "json")
CONTENT_TYPES = {"md": "text/markdown; charset=utf-8", "html": "text/html; charset=utf-8",
                 "json": "application/json"}  # fmt: skip


def render(history: DeploymentHistory, fmt: ReportFormat) -> str:
    """The report of one deployment in ``fmt`` (json: the history export, deployguard-history/1)."""
    # the renderers (HTML with its charts, Markdown) are imported by the first report rendered: the console
    # imports this package for its report route, and most of its requests render nothing
    if fmt == "html":
        from deployguard.reporting.html import render_html

        return render_html(history)
    if fmt == "md":
        from deployguard.reporting.markdown import render_markdown

        return render_markdown(history)
    if fmt == "json":
        return history.model_dump_json(by_alias=True, indent=2) + "\n"
    raise ValueError(f"format: {fmt!r} is not one of {', '.join(FORMATS)}")


__all__ = ["CONTENT_TYPES", "FORMATS", "ReportFormat", "render"]
