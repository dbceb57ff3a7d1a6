"""The console's Experiments pages: the experiments with their status, exposures and sample
ratio check, and each one's report as the HTML the ``experiments report`` verb writes
(:func:`ingester.report.html.render_html`)."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from consumers import db
from ingester.console.context import console, render
from ingester.report import build
from ingester.report.html import render_html
from ingester.report.query import experiment_names

LISTED = 50


@dataclass(frozen=True, slots=True)
class Listed:
    name: str
    status: str
    active: bool
    variants: int
    exposures: int
    srm: str  # ok | flagged | unknown
    srm_p_value: float | None
    verdict: str


async def experiments(request: Request) -> Response:
    listed = []
    async with db.connection(console(request).pool) as conn:
        for name in await experiment_names(conn, LISTED):
            built = await build(conn, name)
            if built is None:
                continue  # deleted meanwhile
            info, analysis = built
            srm = analysis.srm
            listed.append(
                Listed(
                    name=info.name,
                    status=info.status,
                    active=info.is_active,
                    variants=len(analysis.variants),
                    exposures=sum(v.exposures for v in analysis.variants),
                    srm="unknown" if srm.p_value is None else "flagged" if srm.flagged else "ok",
                    srm_p_value=srm.p_value,
                    verdict=analysis.verdict,
                )
            )
    return render(request, "experiments.html", {"experiments": listed, "limit": LISTED})


async def experiment_report(request: Request) -> Response:
    name = request.path_params["name"]
    async with db.connection(console(request).pool) as conn:
        built = await build(conn, name)
    if built is None:
        return render(
            request, "error.html", {"message": f"no experiment named {name!r}"}, status_code=404
        )
    page = render_html(*built)
    link = '<p><a href="/experiments">&larr; all experiments</a></p>\n'
    return HTMLResponse(page.replace("</body>", link + "</body>", 1))
