"""Which config files a command reads, in order: ``experiments/base.yaml`` (what every run shares), then for
files under ``experiments/<modality>/`` that modality's ``base.yaml`` (its data and only what differs), then
the files given, in their order. A YAML syntax error in any of them names the file, line and column before
jsonargparse sees it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import importlib
import inspect
import json
import logging
import math
import re
import sys
import types
import typing
from pathlib import Path

import yaml

from archbench.errors import ConfigError, first_line
from datamodules.files import not_utf8

EXPERIMENTS = Path(__file__).resolve().parent
GLOBAL_BASE = EXPERIMENTS / "base.yaml"
# The options of a run (what fit takes) among a command's own: compare and sweep pass them to every run.
RUN_OPTIONS = ("--data", "--model", "--trainer", "--early_stopping", "--seed_everything")


def _config_values(args: list[str]) -> list[tuple[int, str]]:
    """(position of the option, its value) of every ``--config`` / ``-c`` option."""
    found = []
    for i, arg in enumerate(args):
        if arg in ("--config", "-c") and i + 1 < len(args):
            found.append((i, args[i + 1]))
        elif arg.startswith("--config="):
            found.append((i, arg.split("=", 1)[1]))
    return found


def bases_of(path: Path) -> list[Path]:
    """The ``base.yaml`` files a config under ``experiments/`` builds on, outermost first (not the global base,
    which every command loads, and not the file itself)."""
    path = path.resolve()
    try:
        relative = path.parent.relative_to(EXPERIMENTS)
    except ValueError:
        return []  # a user's own file: it says itself what it builds on
    bases, folder = [], EXPERIMENTS
    for part in relative.parts:
        folder = folder / part
        if (folder / "base.yaml").is_file() and folder / "base.yaml" != path:
            bases.append(folder / "base.yaml")
    return bases


def _key_nodes(node: yaml.Node | None, keys: list[str]) -> list[tuple[yaml.Node, yaml.Node]]:
    """(key node, value node) of each of ``keys`` in turn, as far down a composed YAML document as they are
    found; a config's ``init_args`` level may be left out of the keys (``model.net.moe`` finds
    ``model: init_args: net: init_args: moe:``)."""
    path = []
    for key in keys:
        if not isinstance(node, yaml.MappingNode):
            break
        found = {k.value: (k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode)}
        if key not in found and "init_args" in found and isinstance(found["init_args"][1], yaml.MappingNode):
            found = {
                k.value: (k, v) for k, v in found["init_args"][1].value if isinstance(k, yaml.ScalarNode)
            }
        if key not in found:
            break
        path.append(found[key])
        node = found[key][1]
    return path


def key_line(path: Path | None, *keys: str) -> str:
    """``FILE:LINE`` of a (nested) key in a YAML file, as far down as the keys are found there; ``FILE`` when the
    file cannot be read."""
    try:
        found = _key_nodes(yaml.compose(Path(path).read_text()), list(keys))
    except (OSError, TypeError, yaml.YAMLError):
        return str(path)
    return f"{path}:{found[-1][0].start_mark.line + 1}" if found else str(path)


def _yaml_node(text: str, keys: list[str]) -> tuple[yaml.Node, yaml.Node] | None:
    """(key node, value node) of a config's (nested) option in YAML ``text`` (``_key_nodes``); None when the
    text does not set it."""
    try:
        found = _key_nodes(yaml.compose(text), keys)
    except yaml.YAMLError:
        return None
    return found[-1] if keys and len(found) == len(keys) else None


def where_set(said: str, args: list[str]) -> str:
    """``FILE:LINE: `` of the config file that set the option a message (``one_line``'s ``KEY: ...``) concerns;
    ``""`` when the command line sets it (or an option above or below it), when an inline config (compare's
    ``config:`` mapping) sets it, or when no file does (the message names the option either way). Of several
    files that set it: the first whose value is the message's "Given value" (jsonargparse stops at the first
    file with a bad value), else the last (the one that wins, which the run read)."""
    named = re.match(r"([\w.]+): (?:Option '([\w.]+)' is not accepted)?", said)
    group = re.search(r"does not accept option '([\w.]+)'", said)  # a group's (trainer:) unknown key
    if named is None and group is None:
        return ""
    if group is not None:
        keys = group.group(1).split(".")
    else:
        keys = named.group(1).split(".") + (named.group(2).split(".") if named.group(2) else [])
    given = ".".join(keys).replace(".init_args.", ".")
    configs = {i for i, _ in _config_values(args)}
    for i, arg in enumerate(args):  # --model.net.init_args.moe=8, --ckpt_path X: the command line said it
        option = arg.split("=", 1)[0].removeprefix("--").replace(".init_args.", ".")
        if not arg.startswith("--") or i in configs or option == "config":
            continue
        if option == given or given.startswith(option + ".") or option.startswith(given + "."):
            return ""
    setting = []  # (file, key node) of each config that sets it, in order
    for _, value in _config_values(args):
        inline = "\n" in value or value.lstrip().startswith("{")
        try:
            text = value if inline else Path(value).read_text()
        except OSError:
            continue
        node = _yaml_node(text, keys)
        if node is not None:
            setting.append((None if inline else value, node))
    if not setting:
        return ""
    value = re.search(r"(?:Given|Got) value: (.+?)(?:;|$)", said)
    bad = [(f, n) for f, n in setting if value and isinstance(n[1], yaml.ScalarNode)
           and n[1].value == value.group(1).strip()]  # fmt: skip
    file, (key_node, _) = (bad or setting[-1:])[0]
    return f"{file}:{key_node.start_mark.line + 1}: " if file is not None else ""


def key_hint(name: str, keys: list[str]) -> str:
    """For a key a settings file does not take: ``did you mean 'seeds'?``, or the keys it takes."""
    close = difflib.get_close_matches(name, keys, n=1)
    return f"did you mean {close[0]!r}?" if close else f"it takes: {', '.join(keys)}"


@contextlib.contextmanager
def lightning_quiet():
    """Lightning's info lines (the seed set, the accelerators found) held back, for the parses that check every
    row's or trial's options before any runs: each run says them when it starts."""
    quiet = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(quiet, levels, strict=True):
            logger.setLevel(level)


def parse_file(parser, path: Path, settings: type) -> dict:
    """A settings file (a comparison, a sweep) read by its jsonargparse ``parser`` (of the dataclass
    ``settings``): the values, or a ConfigError naming the file and the option (a key the file does not take:
    its line, and the close key; a file that holds no settings, or not a mapping: the keys it needs)."""
    from jsonargparse import ArgumentError

    needs = [f.name for f in dataclasses.fields(settings)
             if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]  # fmt: skip
    expected = ", ".join(f"{k}:" for k in needs) + ", ..."
    if check_yaml(path, expected) is None:
        raise ConfigError(
            f"{path}: holds no settings (it is empty, or comments alone); it needs {expected[:-5]}"
        )
    try:
        parsed = parser.parse_path(str(path))
    except ArgumentError as err:
        said = one_line(err)
        # a misspelt key; with a mapping under it (modles: {GRU: ...}) jsonargparse names the key below it
        unknown = re.fullmatch(r"Option '(\w+)(?:\.[\w.]+)?' is not accepted", said)
        if unknown:
            key = unknown.group(1)
            keys = sorted({k.split(".")[0] for k in parser.get_defaults().keys()} - {"__path__"})  # noqa: SIM118 (a Namespace)
            raise ConfigError(
                f"{key_line(path, key)}: Option '{key}' is not accepted ({key_hint(key, keys)})"
            ) from None
        required = re.fullmatch(r"the following arguments are required: ([\w.]+)", said)
        if required:  # written with nothing under it (``space:``), or left out
            key = required.group(1)
            where = key_line(path, *key.split("."))
            said = f"{key}: empty" if where != str(path) else f"{key}: missing"
            raise ConfigError(f"{where}: {said}; the file needs it") from None
        keyed = re.match(r"([\w.]+): ", said)  # a value of the wrong type: the line of its key
        raise ConfigError(
            f"{key_line(path, *keyed.group(1).split('.')) if keyed else path}: {said}"
        ) from None
    values = {k: v for k, v in parsed.as_dict().items() if k != "__path__"}
    hints = typing.get_type_hints(settings)
    for name, value in values.items():  # ``seeds: null``: jsonargparse takes it for any type
        hint = hints.get(name)
        if value is None and hint is not None and type(None) not in typing.get_args(hint):
            raise ConfigError(
                f"{key_line(path, name)}: {name}: null (empty) where it takes {_type_said(hint)}"
            )
    return values


def _type_said(hint) -> str:
    """A field's type as a message says it: ``an integer``, ``a mapping``, ``a string or a list``."""
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false", dict: "a mapping",
             list: "a list"}  # fmt: skip
    kinds = [typing.get_origin(h) or h for h in (typing.get_args(hint) or (hint,))]
    if typing.get_origin(hint) is not typing.Union and not isinstance(hint, types.UnionType):
        kinds = [typing.get_origin(hint) or hint]
    return " or ".join(dict.fromkeys(names.get(k, getattr(k, "__name__", str(k))) for k in kinds))


def check_yaml(path: Path, expected: str = "trainer:, model:, data:", option: str = "--config"):
    """A config file that exists and parses, or a ConfigError naming the file, line and column (and ``option``,
    which gave the file; a file that is no mapping: the ``expected`` keys). Returns what the file holds."""
    if path.is_dir():
        raise ConfigError(f"{option}: {path} is a directory, expected a YAML file")
    if not path.is_file():
        raise ConfigError(f"{option}: file {str(path)!r} not found")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(not_utf8(path)) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(err, "problem", None) or first_line(err, 1000)
        raise ConfigError(f"{where}: YAML syntax error: {problem}") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of options ({expected}), found {loaded!r:.60}")
    _refuse_duplicate_keys(path, yaml.compose(path.read_text()))
    return loaded


def _refuse_duplicate_keys(path: Path, node, where: str = "") -> None:
    """A key given twice in one mapping (two rows of a comparison named alike): YAML keeps the last silently."""
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else None
            if name is not None and name in seen:
                raise ConfigError(f"{path}:{key.start_mark.line + 1}: {where}{name}: given twice in one mapping "
                                  "(YAML would keep the last one alone); rename or remove one")  # fmt: skip
            seen.add(name)
            _refuse_duplicate_keys(path, value, f"{where}{name}." if name is not None else where)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _refuse_duplicate_keys(path, item, where)


def _net_nulls(args: list[str]) -> list[str]:
    """``--model.net.init_args.X null`` (or ``=null``) as the inline config ``{model: {net: {init_args: {X: null}}}}``
    in its place: jsonargparse 4.53 reads a command-line null of an option two classes deep (the task's net) as the
    text 'None', where the same null in YAML is None."""
    out, i = [], 0
    while i < len(args):
        arg = args[i]
        name, eq, value = arg.partition("=")
        if not eq and i + 1 < len(args) and name.startswith("--model."):
            value, taken = args[i + 1], 2
        else:
            taken = 1
        keys = name.removeprefix("--").split(".")
        keys = [k for k in keys if k != "init_args"]
        if value == "null" and len(keys) == 3 and keys[:2] == ["model", "net"]:
            out += ["--config", yaml.safe_dump({"model": {"net": {"init_args": {keys[2]: None}}}})]
            i += taken
            continue
        out.append(arg)
        i += 1
    return out


def flatten(value, prefix: str = "") -> dict:
    """Nested settings as ``{dotted key: value}``: mappings are walked, anything else (a list, an empty mapping)
    is a value."""
    if not (isinstance(value, dict) and value):
        return {prefix: value}
    out = {}
    for key, inner in value.items():
        out.update(flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
    return out


def plain_config(config) -> dict:
    """A parsed config (a jsonargparse Namespace) as plain data, as W&B runs log it (no API key can be in it: keys
    come from the environment or netrc). Its ``config`` list names the files it was read from; settings given
    inline (a sweep trial's values, a comparison's shared settings) have no file and show as ``<inline>``."""
    plain = json.loads(json.dumps(config.as_dict(), default=str))
    if isinstance(plain.get("config"), list):
        plain["config"] = [c if c is not None else "<inline>" for c in plain["config"]]
    return plain


def with_built_values(plain: dict, model, data) -> dict:
    """``plain_config``'s dict with the values LightningCLI's links gave the task, its net and the data when they
    were built (a language model's ``task``, ``num_outputs``, the net's ``vocab_size`` and ``seq_len``, DNA's
    label mean and std): parsed, they sit at their defaults (trial 26: a language model's W&B config said
    ``task: regression, num_outputs: 1`` beside the top-level ``task: language_modeling``)."""
    simple = (int, float, str, bool, type(None))
    for section, built in (("model", model), ("data", data)):
        init = (plain.get(section) or {}).get("init_args")
        hparams = getattr(built, "hparams", None)
        if not isinstance(init, dict) or hparams is None:
            continue
        for key, value in init.items():
            if key in hparams and isinstance(hparams[key], simple) and hparams[key] != value:
                init[key] = hparams[key]
    net_init = ((plain.get("model") or {}).get("init_args") or {}).get("net", {})
    net_init = net_init.get("init_args") if isinstance(net_init, dict) else None
    net = getattr(model, "net", None)
    for key, value in (net_init or {}).items():
        found = getattr(net, key, None)
        if value is None and found is not None and isinstance(found, simple):
            net_init[key] = found
    return plain


def options_before_configs(args: list[str]) -> list[str]:
    """The options given before the last ``--config``: jsonargparse reads options and files in order, so a config
    file after an option may set it again, and an option of a class the file chooses is read before it is chosen
    (``--data.batch_size 4 --config gpt.yaml``: "no datamodule chosen"). The order is kept (a later file may
    append to or override earlier options on purpose); the command says it (``ExperimentCLI``)."""
    last = max((k for k, _ in _config_values(args)), default=-1)
    if last < 0:  # no config file: nothing comes before one
        return []
    before = [a.split("=")[0] for a in args[:last] if a.startswith("--") and a != "--config"]
    before = [a for a in before if not a.startswith("--config") and a not in ("--print_config", "--help")]
    return list(dict.fromkeys(before))


def expand_configs(args: list[str]) -> list[str]:
    """``args`` with the modality bases its config files build on inserted before the first ``--config`` (and a
    net option's command-line null read as YAML's, ``_net_nulls``): the bases are the lowest layer, whatever order
    the files come in."""
    args = _net_nulls(list(args))
    found = _config_values(args)
    bases: list[Path] = []
    given = set()
    for _, value in found:
        if "\n" in value or value.lstrip().startswith("{"):
            continue  # settings given inline (compare passes YAML text), not a file
        path = Path(value)
        check_yaml(path)
        given.add(path.resolve())
        for base in bases_of(path):
            if base not in bases:
                check_yaml(base)
                bases.append(base)
    missing = [b for b in bases if b not in given]
    if not missing:
        return list(args)
    first = found[0][0]
    return [*args[:first], *(a for b in missing for a in ("--config", str(b))), *args[first:]]


_NOISE = ("Does not validate against any of the Union subtypes", "Subtypes:", "Errors:", "Given value type:",
          "Expected a <class 'NoneType'>", "Given value: NestedArg(", "Given value: Namespace(",
          "Given value: {", "Given value: [", "Subclass types expect one of:", "a class path (str)",
          "a dict with class_path entry", "a dict without class_path but with init_args entry",
          "a dict with parameters accepted by the base class")  # fmt: skip


def import_class(class_path: str) -> type | None:
    """The class a config names by ``class_path`` (``datamodules.lm.LanguageModelDataModule``); None when it
    cannot be imported."""
    try:
        module, name = str(class_path).rsplit(".", 1)
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None
    return found if isinstance(found, type) else None


def is_subclass(class_path: str, base: type) -> bool:
    """Whether the class a config names is ``base`` or derives from it (a user's subclass of our data module)."""
    found = import_class(class_path)
    return found is not None and issubclass(found, base)


_OPTIMIZER_OPTIONS = ("lr", "weight_decay", "momentum", "betas", "eps")


def _task_class() -> type:
    from lit_models.task import Task

    return Task


# One setting under two names: the Transformer nets' (torch's words) and the GPT's (litgpt's and nanoGPT's)
_SAME_OPTION = dict(
    pair
    for torch_name, gpt_name in (
        ("activation", "mlp"),
        ("dim_feedforward", "intermediate_size"),
        ("d_model", "n_embd"),
        ("nhead", "n_head"),
        ("num_layers", "n_layer"),
    )
    for pair in ((torch_name, gpt_name), (gpt_name, torch_name))
)


def _suggestion(class_path: str, option: str, given_by_the_task: tuple[str, ...] = ()) -> str:
    """For an option the chosen class does not take: the close name it does take, or the names it takes (its
    own and, through ``**kwargs``, its parents' up to Lightning's and torch's classes); ``given_by_the_task``:
    arguments the caller fills in (an optimizer's ``params``), never suggested."""
    cls = import_class(class_path)
    if cls is None:
        return ""
    name = cls.__name__
    names = []
    for base in cls.__mro__:
        library = base is not cls and base.__module__.split(".")[0] in ("lightning", "torch", "builtins")
        if library or "__init__" not in vars(base):
            continue
        try:
            parameters = inspect.signature(base.__init__).parameters.values()
        except (ValueError, TypeError):  # a builtin's: no signature to read
            break
        names += [p.name for p in parameters if p.name not in ("self", *given_by_the_task) and p.kind not in
                  (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name not in names]  # fmt: skip
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break
    if not names:
        return ""
    if _SAME_OPTION.get(option) in names:  # the other family's name (the GPT's for the Transformer's or back)
        return f" (did you mean {_SAME_OPTION[option]!r}? {name}'s name for {option})"
    starting = [n for n in names if n.startswith(option)]
    close = starting if len(starting) == 1 else difflib.get_close_matches(option, names, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else f" ({name} takes: {', '.join(names)})"


def _class_suggestion(module: str, name: str) -> str:
    try:
        found = importlib.import_module(module)
    except ImportError:
        return ""
    classes = [k for k, v in vars(found).items() if inspect.isclass(v) and not k.startswith("_")]
    close = difflib.get_close_matches(name, classes, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {module}.{close[0]}?)"
    own = [k for k in classes if f"{getattr(vars(found)[k], '__module__', '')}.".startswith(f"{module}.")]
    return f" ({module} has: {', '.join(own[:15])}{', ...' if len(own) > 15 else ''})" if own else ""


# What jsonargparse says of a value that is no class path, config path or mapping for a class-typed option
_ABOUT_A_CLASS = re.compile(
    r"Expected a path but .* either not accessible or invalid|Expected a dot import path"
)


def _options_class(said: str) -> type | None:
    """The project's dataclass of options (MoEOptions, UniversalOptions) that ``said`` names: jsonargparse's
    "Not a valid subclass of NAME", or a class path; None for anything else (its class-path advice stands)."""
    named = re.fullmatch(r"Not a valid subclass of (\w+)|([\w.]+\.\w+)", said)
    if named is None:
        return None
    if named.group(2):
        found = import_class(named.group(2)) if named.group(2).split(".")[0] in _OWN else None
        return found if found is not None and dataclasses.is_dataclass(found) else None
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] in _OWN:
            found = getattr(module, named.group(1), None)
            if isinstance(found, type) and dataclasses.is_dataclass(found):
                return found
    return None


_OWN = ("lit_models", "datamodules", "experiments")


def _init_args_beside_options(message: str) -> str | None:
    """jsonargparse's "Not a valid subclass" for a mapping that holds ``init_args`` beside other options (a
    nested class's ``init_args`` indented one level too far left, under its parent): said as such."""
    import ast

    key = re.match(r'Parser key "([\w.]+)"', message)
    given = re.search(r"^\s*Given value: (\{.*\})\s*$", message, flags=re.M)
    if key is None or given is None or "Not a valid subclass of" not in message:
        return None
    try:
        value = ast.literal_eval(given.group(1))
    except (ValueError, SyntaxError):
        return None
    beside = [k for k in value if k not in ("class_path", "init_args")] if isinstance(value, dict) else []
    if "init_args" not in value or not beside:
        return None
    inner = ", ".join(value["init_args"]) if isinstance(value["init_args"], dict) else value["init_args"]
    return (f"{key.group(1)}: init_args ({inner}) beside {', '.join(beside)}: a class's options go all under its "
            f"init_args or all beside its class_path; is this init_args meant for {beside[-1]} (indented one level "
            "too far left)?")  # fmt: skip


def _task_section(name: str, rest: str | None) -> str:
    """``optimizer.lr`` given at the top level (a sweep's key, a config's section): where it goes."""
    rest = rest or ""
    inner = rest if not rest or rest.startswith((".init_args", ".class_path")) else f".init_args{rest}"
    return f" (the optimizer and its schedule are the task's: model.{name}{inner})"


def one_line(message: str) -> str:
    """A parser's message as one line: the option it concerns (jsonargparse nests it as "Parser key" within
    "class_path" levels) and the reasons, without the Union boilerplate around them."""
    keys, reasons, chosen = [], [], None  # reasons: (the class_path they were found under, the reason)
    options_union = None  # the dataclass of options of the union being read (a line "Subtypes: [...]")
    mixed = _init_args_beside_options(str(message))
    if mixed:
        return mixed
    # a link's compute function that raised (the data config of a timm model's name): its own message, not
    # jsonargparse's wrapping that repeats the whole model config
    message = re.sub(
        r"Call to compute_fn of link '[^']*' with args \(.*?\) failed: ", "", str(message), flags=re.S
    )
    for line in str(message).splitlines():
        line = line.strip().lstrip("- ").strip()
        if line.startswith("Subtypes: ["):  # a union with one of the project's dataclasses of options
            options_union = next(
                filter(None, map(_options_class, re.findall(r"<class '([\w.]+)'>", line))), None
            )
        if not line or line.startswith(_NOISE):
            continue
        # an optimizer's or schedule's option of the wrong type: the key at the end of the callable's line
        nested = re.search(r'expects a function or a callable class: Parser key "(\w+)":$', line)
        if nested:
            keys.append(nested.group(1))
            continue
        if line.startswith('Parser key "'):
            keys.append(line.split('"')[1])
        elif line.startswith("Problem with given class_path '"):
            chosen = line.split("'")[1]
        elif line not in (r for _, r in reasons):
            # an optimizer's or schedule's option misspelt (--model.optimizer.lrr): jsonargparse says it of the
            # callable type, with the namespace; said of the class, with the close name
            callable_option = re.search(r"expects a function or a callable class: Option '(\w+)' is not accepted\. "
                                        r"Got value: .*class_path='([\w.]+)'", line)  # fmt: skip
            if callable_option:
                option, path = callable_option.groups()
                line = f"{path} takes no option {option!r}" + _suggestion(
                    path, option, ("params", "optimizer")
                )
            # one without its required option (StepLR's step_size): the class from the value given (trial 32)
            required = re.search(r"expects a function or a callable class: the following arguments are required: "
                                 r"([\w, ]+)", line)  # fmt: skip
            given = re.search(r"Given value: Namespace\(class_path='([\w.]+)'", str(message))
            if required and given:
                names = [n.strip() for n in required.group(1).split(",")]
                line = (f"{given.group(1)} needs {', '.join(names)}: give --{'.'.join(keys)}.{names[0]} VALUE (or "
                        f"init_args: {{{names[0]}: VALUE}} under its class_path)")  # fmt: skip
            # a value of the wrong type (betas 0.9), without the namespace of the whole optimizer after it
            wrong = re.fullmatch(r"(Expected a <class '(\w+)'>\. Got value: [^.]*(?:\.\d+)?)\. Got value: Namespace\(.*",
                                 line)  # fmt: skip
            line = re.sub(r"\. Got value: Namespace\(class_path=.*$", "", line)  # the whole optimizer, again
            if wrong:
                line = wrong.group(1) + (" (a list in brackets, e.g. [0.9, 0.999])"
                                         if wrong.group(2) in ("tuple", "list") else "")  # fmt: skip
            # a key of an option the class lacks (moe.experts on a recurrent net): said of the option, moe
            unknown = re.fullmatch(r"Option '(\w+)(\.[\w.]+)?' is not accepted", line) or (
                re.fullmatch(r"unrecognized arguments: --(\w+)(\.[\w.]+)(=\S*)?", line) if chosen else None
            )
            if unknown and unknown.group(1) == "init_args":
                line += " (options under an init_args of their own: indent them under the class_path they belong to)"
            elif unknown and unknown.group(1) in ("optimizer", "lr_scheduler") and not chosen:
                line += _task_section(unknown.group(1), unknown.group(2))  # a sweep's key optimizer.lr
            elif unknown and unknown.group(1) in _OPTIMIZER_OPTIONS and is_subclass(chosen, _task_class()):
                line += f" (an optimizer's option: --model.optimizer.{unknown.group(1)})"
            elif unknown and chosen:
                line = f"Option '{unknown.group(1)}' is not accepted" + _suggestion(chosen, unknown.group(1))
            trainer = re.search(
                r"Group 'trainer' does not accept option '(\w+)'|accept option 'trainer\.(\w+)'"
                r"|^unrecognized arguments: --trainer\.(\w+)",
                line,
            )
            section = re.search(r"does not accept option '(optimizer|lr_scheduler)(\.[\w.]+)?'", line)
            if section:  # a config file's top-level optimizer: section
                line += _task_section(*section.groups())
            if trainer:  # a Trainer option misspelt in a YAML file or on the command line
                given = next(g for g in trainer.groups() if g)
                line += _suggestion("lightning.pytorch.Trainer", given)
            options = _options_class(line) or (options_union if _ABOUT_A_CLASS.match(line) else None)
            if options is not None:  # a dataclass of options (MoEOptions, UniversalOptions) given a scalar
                fields = ", ".join(f.name for f in dataclasses.fields(options))
                line = f"expected {options.__name__} as a mapping of its options ({fields}), or null"
                if line in (r for _, r in reasons):
                    continue
            missing = re.search(r"module '([\w.]+)' has no attribute '(\w+)'", line)
            if missing:  # a class_path's class misspelt: the module's close name, or its classes
                line += _class_suggestion(missing.group(1), missing.group(2))
            if line.startswith("unrecognized arguments:") and re.search(
                r"--(optimizer|lr_scheduler)\b", line
            ):
                line += " (the optimizer and its schedule are the task's: --model.optimizer, --model.lr_scheduler)"
            if line.startswith("unrecognized arguments:") and re.search(r"--budget[_-]flops\b", line):
                line += (" (compare's option; a single run takes the budget as a callback: --trainer.callbacks+ "
                         "experiments.callbacks.FlopsBudget --trainer.callbacks.flops N)")  # fmt: skip
            if re.fullmatch(r"Expected a <class 'str'>\. Got value: [-+.\w]+", line) and re.search(
                r"\d", line
            ):
                line += " (YAML read a number where text goes: write the text in quotes)"
            reasons.append((chosen, line.replace("<class '", "").replace("'>", "")))
    if not reasons:
        return str(message).strip()
    if any(
        " as a mapping of its options (" in r for _, r in reasons
    ):  # said for what the path errors concern
        reasons = [(c, r) for c, r in reasons if not _ABOUT_A_CLASS.match(r)]
    # jsonargparse tries every type a value may take: a list item's own class (TextSamples: "prompts: expected a
    # str") and its base class (Callback: "option 'prompts' is not accepted"). The base's refusal only repeats
    # that the option is the subclass's: left out where the subclass said why.
    paths = {c for c, _ in reasons if c}
    classes = {c: import_class(c) for c in paths}
    bases = {c for c in paths if classes[c] and any(classes[o] not in (None, classes[c])
                                                     and issubclass(classes[o], classes[c]) for o in paths)}  # fmt: skip
    said = [r for c, r in reasons if c not in bases] or [r for _, r in reasons]
    # the option takes null: a None refused is the text 'None'
    optional = "Expected a <class 'NoneType'>" in str(message)
    if said[-1] == "Given value: None" and len(keys) > 2 and optional:
        # a null for an option inside an option (--model.net.init_args.moe.capacity_factor null): jsonargparse
        # 4.53 reads it back as the text 'None'
        said[-1] += (" (a null given on the command line for an option inside another is read as the text "
                     "'None': write it in a config file; moe's capacity_factor and hidden take 0 for empty)")  # fmt: skip
    return f"{'.'.join(keys)}: {'; '.join(said)}" if keys else "; ".join(said)


# What a command's parser leaves to the run it builds besides RUN_OPTIONS (LightningCLI's own): never mistyped.
PASSED_ON = ("--config", "--print_config", "--ckpt_path", "--weights_only")


def said_key(message: str) -> str | None:
    """The option a one-line message starts with (``data.val_fraction: 1.5 is outside [0, 1)``), ``init_args``
    left out so that ``model.net.init_args.moe`` and ``model.net.moe`` are one key; None when it names none."""
    named = re.match(r"([\w.]+): ", message)
    return named.group(1).replace(".init_args.", ".") if named else None


def from_command_line(message: str, overrides: list[str], to: str) -> str:
    """ " (--X was given on the command line, to every row)" when the option a parser refused is one of
    ``overrides`` (a misspelt ``--trainer.max_epoch``): the file it was parsed with (a comparison's row, a sweep's
    space) is where it was found wanting, not where it came from."""
    message = re.sub(r"\(did you mean [^)]*\)", "", message)  # the suggestion is not what was refused
    key = said_key(message)  # a constructor's "data.train_path: ..." names the option without its dashes
    for i, given in enumerate(overrides):
        if not given.startswith("--"):
            continue
        option, equals, value = given.partition("=")
        value = value if equals else (overrides[i + 1] if i + 1 < len(overrides) else "")
        last, plain = option.rsplit(".", 1)[-1], option[2:].replace(".init_args.", ".")
        # or a mapping given whole that holds it (trial 31: --model.net.init_args.moe '{experts: 2, top_k: 3}'),
        # not a section's file or a class chosen (--trainer PRESET, --model.net CLASS), which set other keys
        inside = value.lstrip().startswith("{") and (key or "").startswith(f"{plain}.")
        if option in message or f"'{last}'" in message or plain == key or inside:
            return f" ({option} was given on the command line, to {to})"
    return ""


def did_you_mean(option: str, options: list[str]) -> str:
    """`` (did you mean --temperature?)`` for an option close to one of ``options``; else ``""``."""
    close = difflib.get_close_matches(option, options, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def finite_float(text: str) -> float:
    """An argparse type: a number, nan and inf refused (they would reach a sampler or a schedule unnoticed)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number")
    return value


def _negative_values(args: list[str], options: list[str]) -> list[str]:
    """``--budget_flops -1e9`` as ``--budget_flops=-1e9``: argparse takes a value that starts with ``-`` and is not
    a plain number (``-1e9``) for an option and says "expected one argument"; joined, the option's own check
    says what is wrong with the value."""
    joined, i = [], 0
    while i < len(args):
        if args[i] in options and i + 1 < len(args) and re.fullmatch(r"-\.?\d[\w.+-]*", args[i + 1]):
            joined.append(f"{args[i]}={args[i + 1]}")
            i += 2
            continue
        joined.append(args[i])
        i += 1
    return joined


def either_spelling(args: list[str], options: list[str]) -> list[str]:
    """``--batch_size`` for ``--batch-size`` and ``--max-new-tokens`` for ``--max_new_tokens``: the commands'
    own options follow the names of what they set (Lightning's ``ckpt_path``, ``transformers``'
    ``max_new_tokens``) or the shell's dashes, so either spelling of a word break is taken."""
    spelt = []
    for arg in args:
        name, sep, value = arg.partition("=")
        if name.startswith("--") and "." not in name and name not in options:
            word = name[2:]
            other = next(
                (o for o in ("--" + word.replace("_", "-"), "--" + word.replace("-", "_")) if o in options),
                None,
            )
            if other is not None:
                arg = other + sep + value
        spelt.append(arg)
    return spelt


class CommandParser(argparse.ArgumentParser):
    """argparse's parser for a command (generate, align, sweep, ...): an option it does not take that is close to
    one it does stops with that name, in one line, rather than going on to the run (``parse_known_args``), or
    argparse's usage text (``parse_args``, a required option misspelt); the run's options (``--data.*``, ...) go
    on untouched."""

    def add_argument(self, *args, **kwargs):
        action = super().add_argument(*args, **kwargs)
        names = [o for o in action.option_strings if o.startswith("--")]
        self.own_options = [*getattr(self, "own_options", []), *names]  # -h/--help comes first, from __init__
        return action

    def parse_known_args(self, args=None, namespace=None):  # parse_args and subcommands' parsers call it too
        given = either_spelling(list(sys.argv[1:] if args is None else args), self.own_options)
        self._given = _negative_values(given, self.own_options)
        parsed, extras = super().parse_known_args(self._given, namespace)
        self._refuse_close(extras)
        return parsed, extras

    def error(self, message: str):
        """One line, as every other mistake is said (argparse would print its usage text and exit)."""
        self._refuse_close(
            getattr(self, "_given", [])
        )  # "required: --text" when --txt was given: say so first
        command = re.sub(r"^(python -m experiments|archbench) ", "", self.prog)
        raise ConfigError(f"{command}: {message}")

    def _refuse_close(self, args: list[str]) -> None:
        own = getattr(self, "own_options", [])
        for arg in args:
            name = arg.split("=", 1)[0]
            run_option = name in RUN_OPTIONS or name.startswith(tuple(f"{o}." for o in RUN_OPTIONS))
            if not name.startswith("--") or name in PASSED_ON or run_option:
                continue
            if any(o.startswith(name) for o in own):  # its own, or a prefix argparse reads as one
                continue
            suggestion = did_you_mean(name, own)
            if suggestion:
                command = re.sub(r"^(python -m experiments|archbench) ", "", self.prog)
                raise ConfigError(f"{command}: unrecognized option {name!r}{suggestion}")


def split_options(argv: list[str]) -> tuple[list[str], list[str]]:
    """(the command's own options, the options every run gets: --data.*, --model.*, --trainer.*, ...)."""
    own, runs, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        name = arg.split("=", 1)[0]
        if name in RUN_OPTIONS or name.startswith(tuple(f"{o}." for o in RUN_OPTIONS)):  # not --models
            runs.append(arg)
            if "=" not in arg and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                runs.append(argv[i + 1])
                i += 1
        else:
            own.append(arg)
        i += 1
    return own, runs
