"""Loop-aware statistics of a compiled XLA program, read from its HLO text.

XLA's `cost_analysis()` counts a `while` body once, whatever its trip count, so a scanned
layer stack or a gradient-accumulation scan is undercounted by its length, and nothing says
what the collectives inside a decode loop move per generated token. `analyse(text)` walks
the computations from the entry, multiplying a loop body by its known trip count
(`known_trip_count` in the while's backend config), and sums

  - matmul FLOPs: 2 x output elements x contracted size of every `dot` (elementwise work
    is not counted; it is small next to the matmuls of a transformer);
  - collective bytes per device, ring model: all-gather output x (n-1)/n, all-reduce
    2 x size x (n-1)/n, reduce-scatter output x (n-1), all-to-all size x (n-1)/n,
    collective-permute size, for groups of n devices;

for the whole program and for each entry-level loop whose trip count is unknown (the
sampler's decode `while_loop`, which exits when every row has stopped), per iteration.
A `conditional` counts its most expensive branch.
"""

from __future__ import annotations

import dataclasses
import math
import re

_DTYPE_BYTES = {
    "pred": 1,
    "s8": 1,
    "u8": 1,
    "s16": 2,
    "u16": 2,
    "bf16": 2,
    "f16": 2,
    "s32": 4,
    "u32": 4,
    "f32": 4,
    "s64": 8,
    "u64": 8,
    "f64": 8,
    "c64": 8,
    "c128": 16,
}
_SHAPE = re.compile(r"\b(pred|[sufc]\d+|bf16)\[([\d,]*)\]")
_HEADER = re.compile(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s*\((.*)\)\s*->.*\{\s*$")
_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*?)\s([\w\-]+)\((.*)$")
COLLECTIVES = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all", "collective-permute")


@dataclasses.dataclass
class Cost:
  flops: float = 0.0
  collective_bytes: float = 0.0
  collectives: int = 0

  def add(self, other: Cost, times: float = 1.0) -> None:
    self.flops += other.flops * times
    self.collective_bytes += other.collective_bytes * times
    self.collectives += int(other.collectives * times)


@dataclasses.dataclass
class _Instr:
  name: str
  shape: str
  op: str
  rest: str


def _bytes(shape: str) -> int:
  return sum(
      math.prod(int(d) for d in dims.split(",") if d) * _DTYPE_BYTES[t]
      for t, dims in _SHAPE.findall(shape)
  )


def _dims(shape: str) -> list[int]:
  m = _SHAPE.search(shape)
  return [int(d) for d in m.group(2).split(",") if d] if m else []


def group_size(rest: str, num_devices: int) -> int:
  """Devices per replica group of a collective (all three HLO spellings)."""
  m = re.search(r"replica_groups=\{\{([\d,\s]*)\}", rest)
  if m:
    return len([x for x in m.group(1).split(",") if x.strip()])
  m = re.search(r"replica_groups=\[(\d+),(\d+)\]<=", rest)
  if m:
    return int(m.group(2))
  m = re.search(r"replica_groups=mesh\[([^\]]*)\]\s*\{([^}]*)\}", rest)
  if m:
    sizes = dict(re.findall(r"'([^']+)'=(\d+)", m.group(1)))
    return math.prod(int(sizes[a]) for a in re.findall(r"'([^']+)'", m.group(2)))
  return num_devices  # replica_groups={} = all devices


def _collective_bytes(op: str, shape: str, n: int) -> float:
  size = _bytes(shape)
  if n <= 1:
    return 0.0
  if op == "all-reduce":
    return 2.0 * size * (n - 1) / n
  if op == "reduce-scatter":
    return float(size * (n - 1))
  if op == "collective-permute":
    return float(size)
  return size * (n - 1) / n  # all-gather (output), all-to-all


def parse(text: str) -> tuple[dict[str, list[_Instr]], dict[str, dict[str, str]], str]:
  """(computation -> instructions, computation -> {value name: shape}, entry name)."""
  comps: dict[str, list[_Instr]] = {}
  shapes: dict[str, dict[str, str]] = {}
  entry, current = "", None
  for line in text.splitlines():
    if current is None:
      m = _HEADER.match(line)
      if m and not line.startswith(" "):
        current = m.group(1)
        comps[current], shapes[current] = [], {}
        for param in re.finditer(r"([\w.\-]+):\s*((?:\([^)]*\))|[^,()]+)", m.group(2)):
          shapes[current][param.group(1)] = param.group(2)
        if line.startswith("ENTRY"):
          entry = current
      continue
    if line.startswith("}"):
      current = None
      continue
    m = _INSTR.match(line)
    if m:
      instr = _Instr(m.group(1), m.group(2), m.group(3), m.group(4))
      comps[current].append(instr)
      shapes[current][instr.name] = instr.shape
  return comps, shapes, entry


def _trip_count(rest: str) -> int | None:
  m = re.search(r'"known_trip_count":\{"n":"(\d+)"\}', rest)
  return int(m.group(1)) if m else None


class Analysis:
  """Costs of the computations of one HLO module (see the module docstring)."""

  def __init__(self, text: str, num_devices: int):
    self.comps, self.shapes, self.entry = parse(text)
    self.num_devices = num_devices
    self.unknown_loops: list[tuple[str, Cost]] = []  # (body, cost per iteration)
    self._memo: dict[str, Cost] = {}

  def _dot_flops(self, comp: str, instr: _Instr) -> float:
    operands = re.findall(r"%([\w.\-]+)", instr.rest.split(")")[0])
    contracting = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", instr.rest)
    if not operands or contracting is None:
      return 0.0
    lhs = _dims(self.shapes[comp].get(operands[0], ""))
    k = math.prod(lhs[int(i)] for i in contracting.group(1).split(",") if i)
    return 2.0 * math.prod(_dims(instr.shape)) * k

  def cost(self, comp: str, top: bool = False) -> Cost:
    """Cost of one execution of `comp` (loops inside it multiplied by their trip counts)."""
    if comp in self._memo and not top:
      return self._memo[comp]
    total = Cost()
    for instr in self.comps.get(comp, []):
      op = instr.op.removesuffix("-start")
      if instr.op.endswith("-done"):
        continue
      if op == "dot":
        total.flops += self._dot_flops(comp, instr)
      elif op in COLLECTIVES:
        n = group_size(instr.rest, self.num_devices)
        total.collective_bytes += _collective_bytes(op, instr.shape, n)
        total.collectives += 1
      if op == "while":
        body = re.search(r"body=%?([\w.\-]+)", instr.rest).group(1)
        cond = re.search(r"condition=%?([\w.\-]+)", instr.rest).group(1)
        per_iter = Cost()
        per_iter.add(self.cost(body))
        per_iter.add(self.cost(cond))
        trips = _trip_count(instr.rest)
        if trips is None:
          if top:
            self.unknown_loops.append((body, per_iter))
          continue  # counted per iteration by the caller
        total.add(per_iter, trips)
      elif op == "conditional":
        listed = re.search(r"branch_computations=\{([^}]*)\}", instr.rest)
        names = (
            re.findall(r"%?([\w.\-]+)", listed.group(1))
            if listed
            else re.findall(r"(?:true|false)_computation=%?([\w.\-]+)", instr.rest)
        )
        costs = [self.cost(n) for n in names if n in self.comps]
        if costs:
          total.add(max(costs, key=lambda c: (c.collective_bytes, c.flops)))
      elif op in ("fusion", "call", "async-start", "custom-call"):
        # a loop the entry reaches through calls is still an entry-level loop (`top`)
        for called in re.findall(r"(?:calls|to_apply)=%?([\w.\-]+)", instr.rest):
          total.add(self.cost(called, top=top and op == "call"))
    if not top:
      self._memo[comp] = total
    return total


def analyse(text: str, num_devices: int) -> dict:
  """Totals of the entry computation and the per-iteration cost of its unbounded loops.

  Returns {`flops`, `collective_bytes`, `collectives`} of one run with every
  unknown-trip-count loop body counted zero times, and `loops`: a list (program order)
  of {`flops`, `collective_bytes`, `collectives`} per iteration of each such loop.
  """
  a = Analysis(text, num_devices)
  total = a.cost(a.entry, top=True)
  return {
      "flops": total.flops,
      "collective_bytes": total.collective_bytes,
      "collectives": total.collectives,
      "loops": [dataclasses.asdict(c) for _, c in a.unknown_loops],
  }


def upcast_parameter_bytes(text: str) -> int:
  """Bytes of f32 copies the program makes of whole bf16 arguments (its weights).

  The CPU backend has no bf16 matmul: it converts the operands to f32, and loop-invariant
  code motion hoists the conversion of a scanned weight stack out of the layer loop, so
  the compiled program holds an f32 copy of every bf16 weight. A TPU/GPU compile keeps
  them bf16. Counted: entry-level converts (or fusions of one) of a bf16 parameter into
  an f32 array of the same dimensions.
  """
  comps, shapes, entry = parse(text)
  params = {
      name: shape for name, shape in shapes[entry].items() if shape.lstrip().startswith("bf16[")
  }
  for instr in comps[entry]:
    if instr.op == "parameter" and instr.shape.startswith("bf16["):
      params[instr.name] = instr.shape
  total = 0
  for instr in comps[entry]:
    if instr.op not in ("convert", "fusion") or not instr.shape.startswith("f32["):
      continue
    operands = re.findall(r"%([\w.\-]+)", instr.rest.split(")")[0])
    if (
        len(operands) == 1
        and operands[0] in params
        and _dims(params[operands[0]]) == _dims(instr.shape)
    ):
      total += _bytes(instr.shape)
  return total
