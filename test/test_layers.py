"""The layers stay apart (DESIGN.md §3, STYLE.md 16): inference imports no ROS and no training code,
the runtime models import no command-line or training code, and ``sparp_ros.model`` and
``sparp_ros.training`` have no import cycles.

Why in fresh subprocesses: ``sys.modules`` of the pytest process holds whatever the other tests
imported; only a new interpreter shows what one import, or one pipeline run, loads."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "sparp_ros"
TRAINING = "sparp_ros.training"

IMPORT_PIPELINE = """
import json, sys
import sparp_ros.pipeline
print(json.dumps(sorted(sys.modules)))
"""

# The capture is rendered first (the test's harness); what the pipeline then loads is its own.
RUN_PIPELINE = """
import json, sys
from pathlib import Path
from sparp_ros.render import render_capture
capture = render_capture(Path(sys.argv[1]), views=3, seed=11)
harness = set(sys.modules)
from sparp_ros.pipeline import PipelineConfig, SparpPipeline
recon = SparpPipeline(PipelineConfig(backend="model"))(capture.frames)
print(json.dumps({"modules": sorted(sys.modules), "harness": sorted(harness),
                  "views": len(recon.views)}))
"""


def _run(code: str, *args: str) -> object:
    """Run ``code`` in a fresh interpreter (no user site, the repository first on the path) and
    return the JSON it prints last."""
    out = subprocess.run([sys.executable, "-s", "-c", code, *args], cwd=REPO, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _module_file(name: str) -> Path:
    """The source file of one of our modules, by its dotted name."""
    path = REPO.joinpath(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports anywhere (also inside functions), relative imports resolved
    to absolute names, each with its ``from`` names as possible submodules."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    package = parts[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)
    return found


def _our_modules() -> dict[str, Path]:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def _import_graph() -> dict[str, set[str]]:
    """Our modules → the ones of ours each imports (anywhere in it)."""
    modules = _our_modules()
    return {name: {m for m in _imports(path) if m in modules and m != name}
            for name, path in modules.items()}


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for dep in graph[todo.pop()] - seen:
            seen.add(dep)
            todo.append(dep)
    return seen


def test_importing_the_pipeline_loads_no_ros_and_no_training():
    loaded = _run(IMPORT_PIPELINE)
    assert not [m for m in loaded if m == "rclpy" or m.startswith("rclpy.")]
    assert not [m for m in loaded if m.startswith(TRAINING)]


def test_a_pipeline_run_on_the_shipped_model_loads_no_training_and_no_argparse_of_ours(objects_dir):
    """The shipped weights (diffusion model and small networks) on a rendered capture: nothing of
    ``sparp_ros.training`` is loaded, and none of our modules that the run loaded imports argparse
    (the interpreter's own ``argparse`` is loaded by libraries, so the sources are checked)."""
    result = _run(RUN_PIPELINE, str(objects_dir / "Schleich_Hereford_Bull.glb"))
    assert result["views"] == 3
    assert not [m for m in result["modules"] if m.startswith(TRAINING)]
    ours = [m for m in set(result["modules"]) - set(result["harness"]) if m.startswith("sparp_ros.")]
    assert "sparp_ros.model.diffusion" in ours and "sparp_ros.model.pair_azimuth" in ours
    assert not [m for m in ours if "argparse" in _imports(_module_file(m))]


def test_the_runtime_models_import_no_command_line_ros_or_training():
    files = sorted((PACKAGE / "model").rglob("*.py"))
    assert len(files) > 5
    for path in files:
        imported = _imports(path)
        assert "argparse" not in imported, path
        assert not [m for m in imported if m.split(".")[0] == "rclpy" or m.startswith(TRAINING)], path


def test_training_calls_the_runtime_never_the_other_way_and_nothing_cycles():
    graph = _import_graph()
    for name in graph:
        if name.startswith("sparp_ros.model"):
            assert not [m for m in _reachable(graph, name) if m.startswith(TRAINING)], name
        if name.startswith(("sparp_ros.model", TRAINING)):
            assert name not in _reachable(graph, name), f"{name} imports itself through a cycle"
    assert any(m.startswith("sparp_ros.model") for m in graph["sparp_ros.training.view_angles"])


ROS_PACKAGES = ("rclpy", "tf2_ros", "sensor_msgs", "geometry_msgs", "visualization_msgs",
                "shape_msgs", "std_msgs", "std_srvs", "diagnostic_msgs", "builtin_interfaces",
                "lifecycle_msgs", "sparp_ros_msgs", "rosbags")


def test_only_the_ros_package_imports_ros_and_it_has_no_cycles():
    """ROS starts at ``sparp_ros/ros/``: no module outside it imports rclpy or a message package,
    except ``cli`` reaching the ROS commands through ``sparp_ros.ros`` (lazily, inside functions)."""
    outside = {name: path for name, path in _our_modules().items()
               if not name.startswith("sparp_ros.ros")}
    assert "sparp_ros.pipeline" in outside and len(outside) > 30
    for name, path in outside.items():
        ros = [m for m in _imports(path) if m.split(".")[0] in ROS_PACKAGES]
        assert not ros, f"{name} imports {ros}: move it into sparp_ros/ros/"
    graph = _import_graph()
    ros_modules = [n for n in graph if n.startswith("sparp_ros.ros.")]
    assert {"sparp_ros.ros.node", "sparp_ros.ros.lifecycle_node", "sparp_ros.ros.run"} <= set(ros_modules)
    for name in ros_modules:
        assert name not in _reachable(graph, name), f"{name} imports itself through a cycle"
