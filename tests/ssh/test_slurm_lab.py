"""The remote lab with a scheduler: a home job on the ssh site runs the lab's workflow
(examples/remote_lab/lab_flow.py) under the lab's own lwfm, whose two steps run on the
lab's psij site, i.e. under the real Slurm of tests/_slurm.py. ``lwfm pull`` brings
the thread home and one SPARQL query spans both instances down to the Slurm job ids
and partitions. Real sshd, real Slurm; nothing is mocked."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from lwfm import Manager
from lwfm.model import JobDefn, State
from lwfm.pull import pull

from ._toml import write_sites

pytestmark = [pytest.mark.slow, pytest.mark.ssh, pytest.mark.slurm]
FLOW = Path(__file__).resolve().parents[2] / "examples" / "remote_lab" / "lab_flow.py"

QUERY = """
SELECT ?name ?native ?info WHERE {
  GRAPH ?home_graph { <urn:uuid:%(root)s> a lwfm:Job }
  GRAPH ?lab_graph  { ?child lwfm:parentJob <urn:uuid:%(root)s> ; lwfm:nativeId ?native }
  ?child schema:name ?name .
  ?st lwfm:statusOf ?child ; lwfm:info ?info .
  FILTER (CONTAINS(?info, " in partition "))
  FILTER (?home_graph != ?lab_graph)
}
"""


def _lab_slurm_conf(slurm, sshd, where: Path) -> Path:
    """The cluster's slurm.conf as the lab sees it: from inside sshd's network namespace
    slurmctld is reached at the host's end of the veth pair."""
    if sshd.netns is None:
        return slurm.conf
    text = re.sub(r"^SlurmctldHost=([^(\s]+)\S*$", rf"SlurmctldHost=\1({sshd.netns.host_ip})",
                  slurm.conf.read_text(), flags=re.M)
    conf = where / "slurm-lab.conf"
    conf.write_text(text)
    return conf


def test_lab_workflow_runs_on_the_labs_slurm_and_its_thread_comes_home(live_sshd, home,
                                                                       slurm, tmp_path):
    slurm.idle()
    conf = _lab_slurm_conf(slurm, live_sshd, tmp_path)
    (live_sshd.remote_home / "lwfm.toml").write_text(
        '[sites.hpc]\ndriver = "psij"\nexecutor = "slurm"\npolling_interval = 0.5\n')
    write_sites(home, {"lab": live_sshd.site_config(reconnect_timeout=30)})
    with Manager(home) as m:
        wf = m.create_workflow("lab on slurm")
        m.put(FLOW, "flows/lab_flow.py", site="lab")
        lab = m.site("lab")
        script = lab.repo.path_of("flows/lab_flow.py")  # type: ignore[attr-defined]
        root = m.submit(JobDefn([sys.executable, script, f"{lab.workdir}/out"], site="lab",  # type: ignore[attr-defined]
                                name="lab campaign",
                                env={"LWFM_LAB_SITE": "hpc", "SLURM_CONF": str(conf)}),
                        workflow_id=wf.id)
        done = m.wait(root.id, 300)
        assert done.state is State.COMPLETE, m.log(root.id)
        assert "lab workflow done" in m.log(root.id)
        pull(m, "lab", workflow_id=wf.id)
        rows = m.graph.select(QUERY % {"root": root.id})
    got = {str(r[0].value): (str(r[1].value), str(r[2].value)) for r in rows}  # name -> last
    assert set(got) == {"simulate", "analyse"}, rows
    for native, info in got.values():
        assert native.isdigit() and f"(job {native})" in info and "partition debug" in info
    with Manager(live_sshd.remote_home) as lab_m:
        kids = [j for j in lab_m.store.find_jobs(workflow_id=wf.id) if j.defn.site == "hpc"]
        assert len(kids) == 2 and all(j.state is State.COMPLETE for j in kids)
