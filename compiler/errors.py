"""One error type for everything a spec author can get wrong, rendered with the line and a caret."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Loc:
    """A span in a source file; lines and columns count from 1, end_col is exclusive."""

    line: int
    col: int
    end_line: int
    end_col: int

    @staticmethod
    def of(item) -> Loc:
        """The span of a lark Token or a Tree's meta."""
        return Loc(item.line, item.column, item.end_line, item.end_column)


NO_LOC = Loc(0, 0, 0, 0)


@dataclass(frozen=True)
class Diagnostic:
    """A located problem: what is wrong, the arithmetic behind it, and the smallest fix."""

    message: str
    loc: Loc = NO_LOC
    notes: tuple[str, ...] = ()
    fix: str | None = None
    path: str = "<spec>"
    severity: str = "error"

    def render(self, source: str | None = None) -> str:
        where = f"{self.path}:{self.loc.line}:{self.loc.col}" if self.loc.line else self.path
        lines = [f"{where}: {self.severity}: {self.message}"]
        if source is not None and self.loc.line:
            numbered = source.split("\n")  # as lark counts lines; splitlines() also splits at \f
            text = numbered[self.loc.line - 1] if self.loc.line <= len(numbered) else ""
            text = text.rstrip("\r").expandtabs(1)
            width = (self.loc.end_col - self.loc.col) if self.loc.end_line == self.loc.line else 1
            skip = max(0, self.loc.col - 60) if len(text) > 120 else 0  # window a long line
            shown = ("..." if skip else "") + text[skip : skip + 120]
            lines.append(f"  {shown}")
            caret = self.loc.col - 1 - skip + (3 if skip else 0)
            lines.append("  " + " " * caret + "^" * max(1, min(width, 120)))
        lines += [f"  {note}" for note in self.notes]
        if self.fix:
            lines.append(f"  fix: {self.fix}")
        return "\n".join(lines)


class SpecError(Exception):
    """Raised with every independent problem found in one spec."""

    def __init__(self, diagnostics: list[Diagnostic] | Diagnostic):
        self.diagnostics = [diagnostics] if isinstance(diagnostics, Diagnostic) else diagnostics
        super().__init__("\n".join(d.message for d in self.diagnostics))

    def render(self, source: str | None = None) -> str:
        return "\n".join(d.render(source) for d in self.diagnostics)


@dataclass
class Problems:
    """Collects diagnostics during a pass so that one run reports every independent error."""

    path: str = "<spec>"
    found: list[Diagnostic] = field(default_factory=list)

    def add(self, message: str, loc: Loc = NO_LOC, notes=(), fix: str | None = None) -> None:
        self.found.append(Diagnostic(message, loc, tuple(notes), fix, self.path))

    def raise_if_any(self) -> None:
        if self.found:
            raise SpecError(self.found)


class ShapeError(Exception):
    """Raised by a registry rule; the checker attaches the location of the layer at fault."""

    def __init__(self, message: str, notes=(), fix: str | None = None, sizes: bool = False):
        super().__init__(message)
        self.message, self.notes, self.fix = message, tuple(notes), fix
        self.sizes = sizes  # another input size might avoid it: worth searching for one


def did_you_mean(word: str, choices) -> str:
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`?" if close else ""


# What other frameworks call a layer, as the keyword (and words) cnnc spells it. A synonym whose
# kind this version lacks is skipped, so the list may name kinds ahead of the registry.
SYNONYMS = {
    "BATCHNORM": "BN",
    "BATCHNORM2D": "BN",
    "BATCHNORM1D": "BN",
    "BATCHNORMALIZATION": "BN",
    "MAXPOOL": "POOL max",
    "MAXPOOL2D": "POOL max",
    "MAXPOOLING2D": "POOL max",
    "AVGPOOL": "POOL avg",
    "AVGPOOL2D": "POOL avg",
    "AVERAGEPOOLING2D": "POOL avg",
    "GLOBALAVGPOOL": "POOL avg global",
    "GLOBALAVERAGEPOOLING2D": "POOL avg global",
    "ADAPTIVEAVGPOOL2D": "POOL avg global",
    "LINEAR": "FC",
    "DENSE": "FC",
    "FULLYCONNECTED": "FC",
    "GEMM": "FC",
    "CONV2D": "CONV",
    "CONVOLUTION": "CONV",
    "DEPTHWISECONV2D": "CONV dw",
    "DECONV2D": "DECONV",
    "CONVTRANSPOSE": "DECONV",
    "CONVTRANSPOSE2D": "DECONV",
    "CONV2DTRANSPOSE": "DECONV",
    "TRANSPOSECONV": "DECONV",
    "UPCONV": "DECONV",
    "RECTIFIER": "RELU",
    "LEAKY_RELU": "LEAKYRELU",
    "LRELU": "LEAKYRELU",
    "SWISH": "SILU",
    "HARDSWISH": "HSWISH",
    "HARD_SWISH": "HSWISH",
    "HARDSIGMOID": "HSIGMOID",
    "HARD_SIGMOID": "HSIGMOID",
    "LAYERNORM": "LN",
    "LAYERNORMALIZATION": "LN",
    "DROP": "DROPOUT",
    "UPSAMPLING2D": "UPSAMPLE",
    "INTERPOLATE": "UPSAMPLE",
    "RESIZE": "UPSAMPLE",
    "SUM": "ADD",
    "PLUS": "ADD",
    "CAT": "CONCAT",
    "CONCATENATE": "CONCAT",
    "MULTIPLY": "MUL",
    "PRODUCT": "MUL",
    "FLAT": "FLATTEN",
    "RESHAPE": "FLATTEN",
    "STOCHASTICDEPTH": "DROPPATH",
}


# Synonyms that are also everyday tensor names: a tensor so named is not taken for a layer.
COMMON_WORDS = frozenset({"SUM", "PLUS", "CAT", "PRODUCT", "DROP", "FLAT", "RESHAPE", "RESIZE"})
COMMON_WORDS |= {"DENSE", "LINEAR", "INTERPOLATE", "CONVOLUTION", "RECTIFIER", "GEMM"}


def kind_for(word: str, kinds) -> str | None:
    """The cnnc spelling of a layer keyword written in another case or another framework's
    name (`relu`, `BatchNorm2d`, `MAXPOOL`), or None; `kinds` are the registry's names."""
    upper = word.upper()
    if upper in kinds:
        return upper
    spelled = SYNONYMS.get(upper) or SYNONYMS.get(upper.replace("_", ""))
    if spelled is not None and spelled.split()[0] in kinds:
        return spelled
    return None


def kind_hint(word: str, kinds) -> str:
    """`did you mean ...?` for a word that is not a layer keyword, or ""."""
    spelled = kind_for(word, kinds)
    if spelled is not None and spelled != word:
        return f"did you mean `{spelled}`?"
    return did_you_mean(word.upper(), kinds)
