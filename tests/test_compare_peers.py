"""benchmarks/compare_peers.py: the table logic and the skip messages, no timing."""
import numpy as np
import pytest

from benchmarks.compare_peers import (EngineRun, Skipped, error_stats, format_table,
                                      official_skip_reason, smplfitter_skip_reason, speed_up,
                                      spread, table_rows)

MANY, FEW = tuple(range(10)), (0, 4, 9)


def run(engine, pose_ids, seconds, v2v_mm=None, ours=None):
    v2v_mm = tuple(v2v_mm if v2v_mm is not None else [5.0] * len(pose_ids))
    return EngineRun(engine, "s", "cpu", tuple(pose_ids), seconds, v2v_mm, ours)


def test_error_stats_are_mean_median_p95_max():
    mean, median, p95, largest = error_stats([1.0, 2.0, 3.0, 10.0])
    assert (mean, median, largest) == (4.0, 2.5, 10.0)
    assert p95 == pytest.approx(np.percentile([1, 2, 3, 10], 95))
    assert all(np.isnan(value) for value in error_stats([]))


def test_speed_up_is_the_ratio_of_poses_per_second_on_the_same_poses():
    ours = run("ours", FEW, seconds=0.5, ours="default")        # 6 poses/s
    peer = run("official", FEW, seconds=300.0)                   # 0.01 poses/s
    assert ours.poses_per_second == 6.0 and peer.poses_per_second == 0.01
    assert speed_up(ours, peer) == pytest.approx(600.0)
    assert speed_up(run("ours", MANY, 2.0), run("fast peer", MANY, 1.0)) == 0.5
    with pytest.raises(ValueError, match="different poses"):
        speed_up(run("ours", MANY, 1.0), peer)


def test_rows_compare_each_peer_with_ours_on_its_own_poses():
    runs = [run("ours", MANY, 2.0, ours="default"), run("ours", MANY, 1.0, ours="fast"),
            run("smplfitter", MANY, 0.5, v2v_mm=[1.0] * 9 + [11.0]),
            run("ours", FEW, 0.3, ours="default"), run("ours", FEW, 0.1, ours="fast"),
            run("official", FEW, 300.0)]
    header, rows = table_rows(runs)
    assert header[:9] == ["engine", "settings", "device", "poses", "poses/s", "v2v_mm mean",
                          "median", "p95", "max"]
    assert header[9:] == ["ours default: speed-up", "ours fast: speed-up"]
    assert len(rows) == len(runs) and all(len(row) == len(header) for row in rows)
    by_engine = {row[0]: row for row in rows if row[0] != "ours"}
    # smplfitter fits 20 poses/s; ours 5 (default) and 10 (fast) on the same 10 poses
    assert by_engine["smplfitter"][3:5] == ["10", "20"]
    assert by_engine["smplfitter"][9:] == ["0.25x", "0.5x"]
    assert by_engine["smplfitter"][5:9] == ["2.00", "1.00", "6.50", "11.00"]
    # the official engine against ours on its 3 poses only: 10 and 30 poses/s vs 0.01
    assert by_engine["official"][9:] == ["1000x", "3000x"]
    assert all(row[9:] == ["-", "-"] for row in rows if row[0] == "ours")


def test_a_peer_without_ours_on_its_poses_gets_no_speed_up():
    header, rows = table_rows([run("ours", MANY, 1.0, ours="default"), run("official", FEW, 9.0)])
    assert rows[1][-1] == "-"
    header, rows = table_rows([run("smplfitter", MANY, 1.0)])     # no ours at all
    assert len(header) == 9 and len(rows[0]) == 9


def test_table_is_markdown_with_skips_below():
    text = format_table([run("ours", MANY, 1.0, ours="default")],
                        [Skipped("official transfer_model", "no --smplx-repo given")])
    lines = text.splitlines()
    assert lines[0].startswith("| engine") and set(lines[1]) <= {"|", "-"}
    assert len({len(line) for line in lines[:3]}) == 1              # columns aligned
    assert lines[-1] == "skipped: official transfer_model: no --smplx-repo given"


def test_skip_messages_when_peers_are_absent(tmp_path):
    nothing = lambda module: False                                  # noqa: E731
    everything = lambda module: True                                # noqa: E731
    assert "--smplx-repo" in official_skip_reason(None, everything)
    assert "not a clone" in official_skip_reason(tmp_path, everything)
    clone = tmp_path / "smplx"
    (clone / "transfer_model").mkdir(parents=True)
    (clone / "transfer_model" / "transfer_model.py").write_text("")
    assert "torch-trust-ncg" in official_skip_reason(clone, nothing)
    assert "loguru" in official_skip_reason(clone, lambda module: module == "torchtrustncg")
    assert official_skip_reason(clone, everything) is None
    assert "pip install smplfitter" in smplfitter_skip_reason(nothing)
    assert smplfitter_skip_reason(everything) is None


def test_poses_are_spread_over_the_sequence():
    assert spread(3, 601) == [0, 300, 600]
    assert spread(5, 3) == [0, 1, 2]
    assert len(spread(500, 601)) == 500 and spread(1, 10) == [0]


def test_rows_divide_each_mean_by_the_floor_on_the_same_poses():
    runs = [run("ours", MANY, 1.0, v2v_mm=[5.0] * 10, ours="floor"),
            run("ours", MANY, 0.1, v2v_mm=[5.0] * 9 + [5.5], ours="default"),
            run("smplfitter", MANY, 0.1, v2v_mm=[10.0] * 10), run("official", FEW, 9.0)]
    header, rows = table_rows(runs)
    assert header[9] == "mean / floor"
    assert [row[9] for row in rows] == ["1.0000", "1.0100", "2.0000", "-"]


def test_a_pair_end_to_end_takes_turns(kit, tmp_path, capsys):
    """One pair end to end on the kit, timed in 2 turns: ours at both presets and at the
    floor in the table, at the floor's error, and the peers that cannot run listed."""
    from benchmarks.compare_peers import compare, parse_args
    args = parse_args(["--kit", str(kit.root), "--pair", "smpl2smplh", "--poses", "6",
                       "--rounds", "2", "--floor", "--amass",
                       str(kit.amass / kit.sequences[0])])
    runs, skipped = compare(args, tmp_path, kit.root, "smpl2smplh")
    assert [run.ours for run in runs] == ["default", "floor preset", "floor"]
    assert all(len(run.pose_ids) == 6 and run.seconds > 0 for run in runs)
    default, floor = np.mean(runs[0].v2v_mm), np.mean(runs[2].v2v_mm)
    assert floor <= default < floor + 0.01            # one mesh: both at about zero
    assert [entry.engine for entry in skipped] == ["smplfitter BodyFitter",
                                                   "official transfer_model"]
    assert "ours: 2 turns of 6 poses" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        parse_args(["--rounds", "0"])


def test_pose_by_pose_counts_the_poses_ours_is_at_or_below():
    from benchmarks.compare_peers import pose_by_pose
    peer = run("official", (3, 7), 100.0, v2v_mm=[6.0, 7.0])
    ours = run("ours", (7, 3, 9), 1.0, v2v_mm=[7.5, 5.9, 1.0], ours="floor preset")
    (line,) = pose_by_pose(peer, [ours])
    assert "6.000 / 5.900, 7.000 / 7.500" in line and "at or below on 1 of 2" in line
