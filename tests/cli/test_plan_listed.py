"""``shoal plan``'s lists of jobs left out: found by the reader's own Shape objects, or by value when the plan
names an equal object instead; the same jobs either way."""

from __future__ import annotations

from shared.cli.jobs_file import PlanJobs, ShapeCounts
from shared.cli.plan import _listed
from shared.domain.jobs import Shape
from shared.domain.packing import UnplacedShape
from shared.domain.resources import Resources


def _shape(cores: float) -> Shape:
    return Shape(resources=Resources(cores=cores, memory=2**30, disk=2**30), wall_time=60.0, preemptible=True)


def test_the_jobs_left_out_are_the_last_of_their_shape_whichever_object_names_it() -> None:
    # GIVEN five jobs of two shapes, each shape one object as the reader makes them
    small, big = _shape(1.0), _shape(64.0)
    shapes = [small, big, small, big, small]
    jobs = PlanJobs(ids=[f"j{i}" for i in range(5)], shapes=shapes, demand=ShapeCounts([(small, 3), (big, 2)]))
    # WHEN two jobs of the small shape are deferred, named by the reader's object or by an equal copy
    for named in (small, _shape(1.0)):
        listed = _listed([UnplacedShape(shape=named, count=2, reason="wait")], jobs)
        # THEN the last two small jobs are listed, in file order
        assert listed == [{"id": "j2", "reason": "wait"}, {"id": "j4", "reason": "wait"}]
