"""The deploy files work as written: Containerfile, Kubernetes (kustomize) and Slurm.

Offline and without a cluster:

- Kubernetes: every YAML document parses and uses only fields of the Kubernetes API objects it
  declares (Job, Pod, PersistentVolumeClaim; a typo is an unknown field), with valid enum values;
  the shard count is written once (``completions``) and copied into ``parallelism`` and SHARDS by
  kustomize (rendered with ``kubectl kustomize`` when kubectl is here); mounts match volumes, the
  claim matches the PVC, the secret's mount matches ``--secret-file``; the shard pod's shell command
  runs (with a recording ``mhacourse``) and passes ``--shard K/N``; ``grade.sh`` against a recording
  ``kubectl`` deletes the old Jobs before a rerun, stops at once when a Job fails, merges only after
  the shards complete, and makes the secret once.
- Slurm: ``bash -n``; ``slurm-grade.sh`` against a recording ``sbatch`` that answers ``id;cluster``
  (federated) submits the merge with ``afterok:id``; the secret is made once, mode 600; the batch
  script runs the venv's ``mhacourse`` (a variable, not PATH).
- Every ``--option`` the deploy files pass to ``mhacourse grade`` exists in its ``--help``.
- Containerfile: the apt packages exist in this Debian release (``apt-cache policy``) when it is the
  image's; its pip steps are replayed offline: the wheel is built from the checkout as the build
  context has it (``.dockerignore`` applied), installed into a fresh venv, and the entrypoint runs.
"""

import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import textwrap
import zipfile
from fnmatch import fnmatch
from pathlib import Path

import pytest
import yaml

from tests.test_wheel import REPO, _run, child_env, clean_copy, course_notebooks, make_venv

DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"

# The fields of the Kubernetes API objects the manifests use (https://kubernetes.io/docs/reference/
# kubernetes-api/), by type: {field: type}; a str type is a nested object, a list [type] a list of
# them, None a scalar or a free map. Fields a manifest does not use may be absent from this table.
SCALAR = None
TYPES = {
    "ObjectMeta": {"name": SCALAR, "namespace": SCALAR, "labels": SCALAR, "annotations": SCALAR},
    "Job": {"apiVersion": SCALAR, "kind": SCALAR, "metadata": "ObjectMeta", "spec": "JobSpec"},
    "JobSpec": {"completionMode": SCALAR, "completions": SCALAR, "parallelism": SCALAR, "backoffLimit": SCALAR,
                "backoffLimitPerIndex": SCALAR, "activeDeadlineSeconds": SCALAR, "ttlSecondsAfterFinished": SCALAR,
                "podFailurePolicy": "PodFailurePolicy", "template": "PodTemplateSpec"},
    "PodFailurePolicy": {"rules": ["PodFailurePolicyRule"]},
    "PodFailurePolicyRule": {"action": SCALAR, "onExitCodes": "OnExitCodes", "onPodConditions": ["OnPodCondition"]},
    "OnExitCodes": {"containerName": SCALAR, "operator": SCALAR, "values": SCALAR},
    "OnPodCondition": {"type": SCALAR, "status": SCALAR},
    "TemplateMeta": {"labels": SCALAR, "annotations": SCALAR},
    "PodTemplateSpec": {"metadata": "TemplateMeta", "spec": "PodSpec"},
    "Pod": {"apiVersion": SCALAR, "kind": SCALAR, "metadata": "ObjectMeta", "spec": "PodSpec"},
    "PodSpec": {"restartPolicy": SCALAR, "containers": ["Container"], "volumes": ["Volume"],
                "securityContext": SCALAR, "nodeSelector": SCALAR, "serviceAccountName": SCALAR},
    "Container": {"name": SCALAR, "image": SCALAR, "command": SCALAR, "args": SCALAR, "workingDir": SCALAR,
                  "env": ["EnvVar"], "resources": "ResourceRequirements", "securityContext": "SecurityContext",
                  "volumeMounts": ["VolumeMount"]},
    "EnvVar": {"name": SCALAR, "value": SCALAR, "valueFrom": "EnvVarSource"},
    "EnvVarSource": {"resourceFieldRef": "ResourceFieldSelector", "fieldRef": SCALAR, "secretKeyRef": SCALAR},
    "ResourceFieldSelector": {"containerName": SCALAR, "resource": SCALAR, "divisor": SCALAR},
    "ResourceRequirements": {"requests": SCALAR, "limits": SCALAR},
    "SecurityContext": {"runAsUser": SCALAR, "runAsGroup": SCALAR, "runAsNonRoot": SCALAR, "privileged": SCALAR,
                        "allowPrivilegeEscalation": SCALAR, "capabilities": "Capabilities", "procMount": SCALAR,
                        "seccompProfile": "Profile", "appArmorProfile": "Profile", "readOnlyRootFilesystem": SCALAR},
    "Capabilities": {"add": SCALAR, "drop": SCALAR},
    "Profile": {"type": SCALAR, "localhostProfile": SCALAR},
    "VolumeMount": {"name": SCALAR, "mountPath": SCALAR, "readOnly": SCALAR, "subPath": SCALAR},
    "Volume": {"name": SCALAR, "persistentVolumeClaim": "PVCSource", "secret": "SecretSource", "emptyDir": SCALAR},
    "PVCSource": {"claimName": SCALAR, "readOnly": SCALAR},
    "SecretSource": {"secretName": SCALAR, "defaultMode": SCALAR, "items": SCALAR, "optional": SCALAR},
    "PersistentVolumeClaim": {"apiVersion": SCALAR, "kind": SCALAR, "metadata": "ObjectMeta", "spec": "PVCSpec"},
    "PVCSpec": {"accessModes": SCALAR, "storageClassName": SCALAR, "resources": "ResourceRequirements",
                "volumeMode": SCALAR},
}
REQUIRED = {"Job": {"apiVersion", "kind", "metadata", "spec"}, "JobSpec": {"template"},
            "Container": {"name", "image"}, "ObjectMeta": {"name"}, "Volume": {"name"},
            "VolumeMount": {"name", "mountPath"}, "EnvVar": {"name"}, "PVCSpec": {"accessModes", "resources"}}
API = {"Job": "batch/v1", "Pod": "v1", "PersistentVolumeClaim": "v1"}
ENUMS = {("JobSpec", "completionMode"): {"NonIndexed", "Indexed"},
         ("PodSpec", "restartPolicy"): {"Always", "OnFailure", "Never"},
         ("PodFailurePolicyRule", "action"): {"FailJob", "FailIndex", "Ignore", "Count"},
         ("OnExitCodes", "operator"): {"In", "NotIn"},
         ("Profile", "type"): {"RuntimeDefault", "Unconfined", "Localhost"},
         ("SecurityContext", "procMount"): {"Default", "Unmasked"}}


def schema_errors(value, kind, where):
    """Fields of ``value`` (an object of type ``kind``) that the API does not have, or bad values."""
    if not isinstance(value, dict):
        return [f"{where}: {kind} must be a mapping, not {value!r}"]
    fields, errors = TYPES[kind], []
    errors += [f"{where}: {kind} needs {name}" for name in sorted(REQUIRED.get(kind, set()) - set(value))]
    for name, item in value.items():
        if name not in fields:
            errors.append(f"{where}.{name}: no such field in {kind}")
            continue
        allowed = ENUMS.get((kind, name))
        if allowed and item not in allowed:
            errors.append(f"{where}.{name}: {item!r} is not one of {sorted(allowed)}")
        child = fields[name]
        if isinstance(child, list):
            if not isinstance(item, list):
                errors.append(f"{where}.{name}: must be a list")
                continue
            for index, element in enumerate(item):
                errors += schema_errors(element, child[0], f"{where}.{name}[{index}]")
        elif child is not None:
            errors += schema_errors(item, child, f"{where}.{name}")
    return errors


def documents(path):
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def manifests():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [doc for name in kustomization["resources"] for doc in documents(K8S / name)]


def by_name(docs, kind, name):
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} documents"
    return found[0]


def pod_specs(docs):
    for doc in docs:
        if doc["kind"] == "Job":
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]
        elif doc["kind"] == "Pod":
            yield doc["metadata"]["name"], doc["spec"]


def kubectl_kustomize():
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("no kubectl here: the kustomize rendering is checked where it is")
    done = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def recorder(folder, name, script):
    """An executable ``folder/name`` (bash) that appends its argv, one line, to ``folder/name.log``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f'#!/bin/bash\nprintf "%s\\n" "$*" >> "{folder}/{name}.log"\n' + textwrap.dedent(script))
    path.chmod(0o755)
    return path


def log(folder, name):
    path = folder / f"{name}.log"
    return path.read_text().splitlines() if path.exists() else []


# --- Kubernetes ---------------------------------------------------------------------------------

def test_every_manifest_uses_only_fields_of_its_kubernetes_object():
    docs = manifests()
    assert sorted(d["kind"] for d in docs) == ["Job", "Job", "PersistentVolumeClaim", "Pod"]
    errors = []
    for doc in docs:
        assert doc["apiVersion"] == API[doc["kind"]], doc["kind"]
        errors += schema_errors(doc, doc["kind"], f"{doc['kind']}/{doc['metadata'].get('name')}")
    assert errors == []
    # the checker does catch a typo and a bad value
    job = by_name(docs, "Job", "mhacourse-grade")
    assert schema_errors({**job, "spec": {**job["spec"], "completionmode": "Indexed"}}, "Job", "x") == \
        ["x.spec.completionmode: no such field in JobSpec"]
    assert schema_errors({**job, "spec": {**job["spec"], "completionMode": "indexed"}}, "Job", "x") == \
        ["x.spec.completionMode: 'indexed' is not one of ['Indexed', 'NonIndexed']"]


def test_the_shard_job_is_indexed_and_the_shard_count_is_written_once():
    docs = manifests()
    job = by_name(docs, "Job", "mhacourse-grade")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and isinstance(spec["completions"], int) and spec["completions"] > 1
    assert spec["template"]["spec"]["restartPolicy"] == "Never"  # podFailurePolicy needs it
    text = "\n".join(p.read_text() for p in K8S.glob("*.yaml"))
    count = str(spec["completions"])
    assert re.findall(rf"^\s*completions:\s*{count}\b", text, re.M) and not re.search(rf"\b{count}/", text)
    assert not re.search(r"^\s*parallelism:\s*" + count + r"\b", text, re.M), "parallelism repeats the count"
    # kustomize copies completions into parallelism and the pods' SHARDS
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    (replacement,) = kustomization["replacements"]
    assert replacement["source"] == {"kind": "Job", "name": "mhacourse-grade", "fieldPath": "spec.completions"}
    (target,) = replacement["targets"]
    assert target["select"] == {"kind": "Job", "name": "mhacourse-grade"}
    assert set(target["fieldPaths"]) == {"spec.parallelism",
                                         "spec.template.spec.containers.[name=grade].env.[name=SHARDS].value"}
    (grade,) = spec["template"]["spec"]["containers"]
    assert grade["name"] == "grade" and [e for e in grade["env"] if e["name"] == "SHARDS"]
    assert '"$K/$SHARDS"' in grade["args"][0] and "JOB_COMPLETION_INDEX + 1" in grade["args"][0]


def test_kustomize_renders_parallelism_and_shards_from_completions():
    docs = kubectl_kustomize()
    spec = by_name(docs, "Job", "mhacourse-grade")["spec"]
    assert spec["parallelism"] == spec["completions"]
    (grade,) = spec["template"]["spec"]["containers"]
    assert {e["name"]: e.get("value") for e in grade["env"]}["SHARDS"] == str(spec["completions"])
    images = {c["image"] for _, pod in pod_specs(docs) for c in pod["containers"]}
    (image,) = yaml.safe_load((K8S / "kustomization.yaml").read_text())["images"]
    assert images == {f"{image['newName']}:{image['newTag']}"}
    assert sum(schema_errors(d, d["kind"], d["kind"]) != [] for d in docs) == 0


def test_mounts_volumes_claim_and_secret_agree():
    docs = manifests()
    claim = by_name(docs, "PersistentVolumeClaim", "mhacourse-class")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # every shard pod mounts it at once
    assert claim["spec"]["resources"]["requests"]["storage"]
    for name, pod in pod_specs(docs):
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in pod["containers"]:
            assert container["image"] == "mhacourse", name  # kustomization.yaml's images: sets it
            assert container.get("command"), name
            mounts = {m["name"]: m for m in container["volumeMounts"]}
            assert set(mounts) == set(volumes), name
            assert mounts["class"]["mountPath"] == container["workingDir"] == "/class"
        assert volumes["class"]["persistentVolumeClaim"]["claimName"] == "mhacourse-class"
    grade_pod = by_name(docs, "Job", "mhacourse-grade")["spec"]["template"]["spec"]
    (grade,) = grade_pod["containers"]
    secret_dir = {m["name"]: m for m in grade["volumeMounts"]}["secret"]
    secret = {v["name"]: v for v in grade_pod["volumes"]}["secret"]["secret"]
    assert secret_dir["readOnly"] is True and secret["secretName"] == "mhacourse-grade"
    assert f"--secret-file {secret_dir['mountPath']}/secret" in grade["args"][0]
    assert "create secret generic mhacourse-grade --from-file=secret=" in (K8S / "grade.sh").read_text()


def test_the_sandboxing_pod_states_its_security_context():
    docs = manifests()
    (grade,) = by_name(docs, "Job", "mhacourse-grade")["spec"]["template"]["spec"]["containers"]
    context = grade["securityContext"]
    # root with CAP_SYS_ADMIN: bubblewrap makes namespaces and mounts; the grader drops each submission
    # to uid 65534 without capabilities. Not privileged, and no AppArmor profile that forbids mount.
    assert context["runAsUser"] == 0 and context["capabilities"]["add"] == ["SYS_ADMIN"]
    assert not context.get("privileged") and context.get("allowPrivilegeEscalation") is not False
    assert context["seccompProfile"]["type"] == "RuntimeDefault" and context["appArmorProfile"]["type"] == "Unconfined"
    (merge,) = by_name(docs, "Job", "mhacourse-grade-merge")["spec"]["template"]["spec"]["containers"]
    assert (
        "capabilities" not in merge["securityContext"] and merge["securityContext"]["allowPrivilegeEscalation"] is False
    )
    # a set-up error (exit 2, e.g. bubblewrap cannot run) fails the Job at once instead of 8 retries
    rules = by_name(docs, "Job", "mhacourse-grade")["spec"]["podFailurePolicy"]["rules"]
    assert {"action": "FailJob", "onExitCodes": {"containerName": "grade", "operator": "In", "values": [2]}} in rules


def run_shard_command(tmp_path, **env):
    (grade,) = by_name(manifests(), "Job", "mhacourse-grade")["spec"]["template"]["spec"]["containers"]
    bin_dir = tmp_path / "bin"
    recorder(bin_dir, "mhacourse", "")
    work = tmp_path / "class"
    work.mkdir(exist_ok=True)
    full = {"PATH": f"{bin_dir}:/usr/bin:/bin", **env}
    return subprocess.run(grade["command"] + grade["args"], cwd=work, env=full, capture_output=True, text=True,
                          timeout=30), log(bin_dir, "mhacourse"), work


def test_the_shard_pod_grades_shard_index_plus_one_of_shards(tmp_path):
    done, calls, work = run_shard_command(tmp_path, JOB_COMPLETION_INDEX="2", SHARDS="8", CPUS="2")
    assert done.returncode == 0, done.stderr
    assert calls == ["grade submissions --shard 3/8 --jobs 2 --resume --secret-file /secret/secret "
                     "--out grading/parts/grades-3.csv --no-progress --no-summary"]
    assert (work / "grading" / "parts").is_dir()
    # applied without kustomize, SHARDS is the placeholder: the pod stops with exit 2 (FailJob), grades nothing
    done, calls, _ = run_shard_command(tmp_path / "raw", JOB_COMPLETION_INDEX="0", CPUS="2",
                                       SHARDS="set from spec.completions by kustomization.yaml")
    assert done.returncode == 2 and "kubectl apply -k" in done.stderr and calls == []


KUBECTL = """
case "$1 $2" in
  "get job/"*) job=${2#job/}; var="STATE_${job//-/_}"; echo -n "${!var:-}" ;;
  "create secret") echo "kind: Secret" ;;
  "apply -f") cat > "$(dirname "$0")/applied-secret.yaml" ;;
esac
exit 0
"""


def run_k8s(tmp_path, *args, **states):
    bin_dir = tmp_path / "bin"
    kubectl = recorder(bin_dir, "kubectl", KUBECTL)
    (bin_dir / "kubectl.log").unlink(missing_ok=True)
    work = tmp_path / "work"
    (work / "submissions" / "alice").mkdir(parents=True, exist_ok=True)
    env = {"PATH": os.environ["PATH"], "KUBECTL": str(kubectl), "POLL_SECONDS": "0.1", "WAIT_SECONDS": "1",
           **{f"STATE_{job.replace('-', '_')}": state for job, state in states.items()}}
    done = subprocess.run([K8S / "grade.sh", *args, "submissions", "out"], cwd=work, env=env, capture_output=True,
                          text=True, timeout=60)
    return done, log(bin_dir, "kubectl"), work


def test_k8s_grade_waits_for_complete_then_merges_and_makes_the_secret_once(tmp_path):
    states = {"mhacourse-grade": "SuccessCriteriaMet Complete", "mhacourse-grade-merge": "Complete"}
    done, calls, work = run_k8s(tmp_path, **states)
    assert done.returncode == 0, done.stderr
    steps = [c.split(" -l ")[-1] if c.startswith("apply -k") else c.split()[0] + " " + c.split()[1] for c in calls]
    assert sorted(steps[:2]) == ["apply -f", "create secret"]  # one pipeline: the Secret from the file
    assert steps[2:] == ["mhacourse/step=volume", "wait --for=condition=Ready",
                     "delete job", "exec mhacourse-files", "cp submissions", "mhacourse/step=shards",
                     "get job/mhacourse-grade", "mhacourse/step=merge", "get job/mhacourse-grade-merge",
                     "cp mhacourse-files:/class/grading"]
    delete = next(c for c in calls if c.startswith("delete job"))
    assert "mhacourse/step in (shards,merge)" in delete and "--ignore-not-found" in delete
    secret = work / "grading" / "secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and re.fullmatch(r"[0-9a-f]{32}\n", secret.read_text())
    first = secret.read_text()
    # a rerun keeps the secret, deletes the old Jobs again; --resume keeps the volume's class
    done, calls, _ = run_k8s(tmp_path, "--resume", **states)
    assert done.returncode == 0 and secret.read_text() == first
    assert not [c for c in calls if c.startswith(("exec", "cp submissions"))]
    assert [c for c in calls if c.startswith("delete job")]


def test_k8s_grade_stops_at_once_when_the_shard_job_fails(tmp_path):
    done, calls, _ = run_k8s(tmp_path, **{"mhacourse-grade": "FailureTarget Failed"})
    assert done.returncode == 1 and "job/mhacourse-grade failed" in done.stderr
    assert calls[-1] == "get job/mhacourse-grade -o jsonpath={.status.conditions[?(@.status==\"True\")].type}"
    assert not [c for c in calls if "step=merge" in c]
    # still running: it gives up after WAIT_SECONDS, without merging
    done, calls, _ = run_k8s(tmp_path / "slow", **{"mhacourse-grade": ""})
    assert done.returncode == 124 and not [c for c in calls if "step=merge" in c]


# --- Slurm --------------------------------------------------------------------------------------

def test_slurm_scripts_parse():
    for name in ("slurm.sbatch", "slurm-grade.sh"):
        _run(["bash", "-n", DEPLOY / name])
        assert os.access(DEPLOY / name, os.X_OK), name


def slurm_checkout(tmp_path):
    """A folder with a .venv/bin/mhacourse that records its argv, a submissions folder, a recording sbatch."""
    work = tmp_path / "class"
    recorder(work / ".venv" / "bin", "mhacourse", "")
    (work / "submissions").mkdir()
    sbatch = recorder(tmp_path / "bin", "sbatch",
                      'n=$(wc -l < "$(dirname "$0")/sbatch.log"); echo "$((4240 + n));cluster-a"\n')
    return work, sbatch


def test_slurm_submits_the_merge_after_the_array_with_a_federated_job_id(tmp_path):
    work, sbatch = slurm_checkout(tmp_path)
    env = {"PATH": os.environ["PATH"], "SBATCH": str(sbatch)}
    done = subprocess.run([DEPLOY / "slurm-grade.sh", "submissions"], cwd=work, env=env, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    shards, merge = log(tmp_path / "bin", "sbatch")
    assert shards == f"--parsable {DEPLOY}/slurm.sbatch submissions"
    assert merge == f"--parsable --array=1 --dependency=afterok:4241 {DEPLOY}/slurm.sbatch merge"
    assert "shards: job 4241; merge: job 4242" in done.stdout
    secret = work / "grading" / "secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    first = secret.read_text()
    done = subprocess.run([DEPLOY / "slurm-grade.sh", "submissions"], cwd=work, env={**env, "SHARDS": "32"},
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and secret.read_text() == first  # made once, kept for every rerun
    assert log(tmp_path / "bin", "sbatch")[2].startswith("--parsable --array=1-32 ")
    # without the venv's mhacourse it says so before submitting anything
    shutil.rmtree(work / ".venv")
    done = subprocess.run([DEPLOY / "slurm-grade.sh", "submissions"], cwd=work, env=env, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 2 and "make venv" in done.stderr and len(log(tmp_path / "bin", "sbatch")) == 4


def test_the_slurm_tasks_run_the_venvs_mhacourse(tmp_path):
    work, _ = slurm_checkout(tmp_path)
    (work / "grading").mkdir()
    (work / "grading" / "secret").write_text("ab" * 16 + "\n")
    env = {"PATH": "/usr/bin:/bin", "SLURM_SUBMIT_DIR": str(work), "SLURM_ARRAY_TASK_ID": "3",
           "SLURM_ARRAY_TASK_COUNT": "8", "SLURM_CPUS_PER_TASK": "2"}
    for argv in (["submissions"], ["merge"]):
        done = subprocess.run(["bash", DEPLOY / "slurm.sbatch", *argv], cwd=work, env=env, capture_output=True,
                              text=True, timeout=30)
        assert done.returncode == 0, done.stderr
    assert log(work / ".venv" / "bin", "mhacourse") == [
        "grade submissions --shard 3/8 --jobs 2 --resume --secret-file grading/secret "
        "--out grading/parts/grades-3.csv --no-progress --no-summary",
        "grade merge grading/parts/*.part.json --out grading/grades.csv --json grading/reports "
        "--canvas grading/canvas.csv --gradescope grading/gradescope --feedback grading/feedback"]
    (work / "grading" / "secret").unlink()
    done = subprocess.run(["bash", DEPLOY / "slurm.sbatch", "submissions"], cwd=work, env=env, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 2 and "grading/secret is missing" in done.stderr


# --- the options the deploy files pass exist ---------------------------------------------------

def test_every_option_the_deploy_files_pass_to_grade_exists():
    mhacourse = Path(sys.executable).parent / "mhacourse"
    if not mhacourse.exists():
        pytest.skip("no console script next to this Python")
    help_text = _run([mhacourse, "grade", "--help"]).stdout
    known = set(re.findall(r"(--[a-z][a-z-]*)", help_text))
    used = set()
    for path in [DEPLOY / "slurm.sbatch", DEPLOY / "Containerfile", *K8S.glob("*.yaml")]:
        for line in path.read_text().splitlines():
            code = line.split("#", 1)[0] if path.suffix != ".yaml" else line
            if "grade" in code or code.strip().startswith(("--", "exec")) or "--shard" in code:
                used |= set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", code))
    used -= {"--cap-add", "--security-opt", "--rm", "--yes", "--no-install-recommends", "--no-cache-dir",
             "--no-deps", "--wheel-dir", "--help", "--parsable", "--array", "--dependency"}
    assert {"--shard", "--secret-file", "--resume", "--canvas", "--gradescope", "--feedback"} <= used
    assert used - known == set()


# --- Containerfile ------------------------------------------------------------------------------

def containerfile():
    """``(FROM images, RUN commands, ENTRYPOINT)`` of deploy/Containerfile (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Containerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    images = [line.split()[1] for line in lines if line.startswith("FROM ")]
    runs = [line[4:].strip() for line in lines if line.startswith("RUN ")]
    (entrypoint,) = [yaml.safe_load(line[len("ENTRYPOINT "):]) for line in lines if line.startswith("ENTRYPOINT ")]
    return images, runs, entrypoint


def test_the_containerfile_installs_bubblewrap_and_openblas_from_debian():
    images, runs, entrypoint = containerfile()
    assert entrypoint == ["mhacourse", "grade"]
    assert len(set(images)) == 1 and images[0].startswith("python:") and "-slim-" in images[0]
    installs = [shlex.split(part) for run in runs for part in run.split("&&") if "apt-get install" in part]
    (install,) = installs
    packages = [word for word in install[install.index("install") + 1:] if not word.startswith("-")]
    assert packages == ["bubblewrap", "libopenblas0-pthread"]
    assert packages == (REPO / "binder" / "apt.txt").read_text().split()[::-1] or \
        set(packages) == set((REPO / "binder" / "apt.txt").read_text().split())
    release = images[0].rsplit("-", 1)[-1]
    os_release = Path("/etc/os-release")
    codename = dict(line.split("=", 1) for line in os_release.read_text().splitlines() if "=" in line
                    ).get("VERSION_CODENAME", "") if os_release.exists() else ""
    if shutil.which("apt-cache") is None or codename.strip('"') != release:
        pytest.skip(f"not Debian {release}: the package names are checked on one")
    for package in packages:
        policy = _run(["apt-cache", "policy", package]).stdout
        assert re.search(r"Candidate: (?!\(none\))\S+", policy), f"{package} is not in Debian {release}:\n{policy}"


def build_context(target):
    """The checkout as `docker build .` sends it: a clean copy, less what .dockerignore excludes."""
    clean_copy(target)
    patterns = [p.strip().rstrip("/") for p in (REPO / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    for path in sorted(target.rglob("*")):
        rel = path.relative_to(target).as_posix()
        if path.exists() and any(ignored(rel, p) for p in patterns):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    return target


def ignored(rel, pattern):
    """Docker's rule: a pattern matches from the context's root (``**/`` at any depth), and a folder it
    matches takes its contents with it."""
    if pattern.startswith("**/"):
        return any(fnmatch(part, pattern[3:]) for part in rel.split("/"))
    parts, pat = rel.split("/"), pattern.split("/")
    return len(parts) >= len(pat) and all(fnmatch(a, b) for a, b in zip(parts, pat))


def test_dockerignore_keeps_what_the_wheel_needs():
    assert ignored(".venv/bin/python", ".venv") and ignored("mhacourse/grading/__pycache__/x.pyc", "**/__pycache__")
    assert not ignored("mhacourse/grading/batch/cli.py", "grading") and ignored("grading/secret", "grading")
    assert ignored("mhacourse.egg-info/PKG-INFO", "*.egg-info")


def test_the_containerfiles_pip_steps_build_and_install_the_course_offline(tmp_path):
    _, runs, entrypoint = containerfile()
    wheel_step, install_step = [run for run in runs if "pip " in run]
    assert "pip wheel" in wheel_step and "--no-deps" in wheel_step and wheel_step.endswith(" .")
    assert "pip install" in install_step and "/dist/mhacourse-*.whl" in install_step
    context = build_context(tmp_path / "src")
    assert not (context / ".venv").exists() and (context / "pyproject.toml").exists()
    dist = tmp_path / "dist"
    # the build stage's `pip wheel --no-deps --wheel-dir /dist .`, offline (setuptools from this venv)
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index", "--no-build-isolation",
          "--wheel-dir", dist, "."], cwd=context)
    (wheel,) = dist.glob("mhacourse-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        bundled = sorted(n[len("mhacourse/_course/"):] for n in archive.namelist()
                         if n.startswith("mhacourse/_course/") and n.endswith(".ipynb"))
    assert bundled == course_notebooks(REPO)
    # the final stage's install, into a fresh venv (dependencies linked from this one), then the entrypoint
    venv = tmp_path / "venv"
    make_venv(venv, wheel)
    home = tmp_path / "home"
    home.mkdir()
    env = child_env(home, venv)
    done = _run([venv / "bin" / entrypoint[0], *entrypoint[1:], "--help"], cwd=home, env=env)
    assert "--secret-file" in done.stdout and "--shard" in done.stdout
    where = _run([venv / "bin" / "python", "-c", "import mhacourse; print(mhacourse.__file__)"], cwd=home, env=env)
    assert where.stdout.startswith(str(venv))
