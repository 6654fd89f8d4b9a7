"""TSL compile: a 200-character, 11-call chain, parsed and planned (BENCHMARKS.md). tsq's lark LALR
parser and its binding (the reference's parse rules, giving the plan that evaluation runs), each
alone and together, beside lark's Earley parser on the same grammar, the naive choice. A loop
parses its file once per version and binds it again for each run, so `bind` alone is what a
scheduled run pays. Every parser must give the same tree before timing."""

from __future__ import annotations

from collections.abc import Callable

from lark import Lark

from benchmarks.report import Report, timed
from tsq.runtimes.tsl.binder import bind, parse
from tsq.runtimes.tsl.syntax import GRAMMAR, Chain, _lark, _ToSyntax, parse_script

# 11 calls: select where last sampleBy groupBy add mul maxWith minWith rename store
SOURCE = ('select("cpu").where("dc=gra", "host~web.*", "env!=dev").last(1h, shift=5m)'
          '.sampleBy(1m, mean, "none").groupBy(["dc"], mean).add(1).mul(2).maxWith(0)'
          '.minWith(1000).rename("cpu_1m_by_dc").store("TOKEN")')
BENCH = "tsl_compile"


def _timed(call: Callable[[], object], repeat: int) -> list[float]:
    return timed(call, repeat, warm=max(3, repeat // 20))  # warm: lark's caches, the allocator


def run(report: Report, *, quick: bool) -> None:
    fast, slow = (50, 5) if quick else (3000, 200)
    earley = Lark(GRAMMAR.read_text(encoding="utf-8"), parser="earley")
    script = parse_script(SOURCE)
    if len(script) != 1 or not isinstance(script[0], Chain):
        raise RuntimeError("the source is not one chain")
    calls = len(script[0].calls) + 1  # the head call, then each `.call(…)`
    if (len(SOURCE), calls) != (200, 11):
        raise RuntimeError(f"the chain is {len(SOURCE)} characters and {calls} calls, not 200/11")
    if earley.parse(SOURCE) != _lark().parse(SOURCE):
        raise RuntimeError("lark Earley and LALR give different trees for the chain")
    plan = parse(SOURCE)
    if bind(script, SOURCE) != plan or bind(_ToSyntax().transform(earley.parse(SOURCE)),
                                            SOURCE) != plan:
        raise RuntimeError("binding the cached syntax tree does not give parse()'s plan")
    if len(plan) != 1 or len(plan[0].select.methods) != 8:
        raise RuntimeError(f"the chain planned into {plan!r}, not one select with 8 methods")

    report.add(BENCH, "lark Earley tree", _timed(lambda: earley.parse(SOURCE), slow))
    report.add(BENCH, "Earley + syntax + bind (naive)", _timed(
        lambda: bind(_ToSyntax().transform(earley.parse(SOURCE)), SOURCE), slow))
    report.add(BENCH, "lark LALR tree", _timed(lambda: _lark().parse(SOURCE), fast),
               "lark Earley tree")
    report.add(BENCH, "parse_script (LALR + syntax)", _timed(lambda: parse_script(SOURCE), fast),
               "lark Earley tree")
    report.add(BENCH, "bind (each run: tree cached)", _timed(lambda: bind(script, SOURCE), fast))
    report.add(BENCH, "parse (LALR + syntax + bind)", _timed(lambda: parse(SOURCE), fast),
               "Earley + syntax + bind (naive)")
    micro = {str(r["impl"]): round(float(r["median_s"]) * 1e6, 1)  # type: ignore[arg-type]
             for r in report.rows if r["bench"] == BENCH}
    report.note(BENCH, "p50 in microseconds", {
        "chars": len(SOURCE), "calls": calls, **micro,
        "target_parse_us": 200, "meets_target": micro["parse (LALR + syntax + bind)"] <= 200})
