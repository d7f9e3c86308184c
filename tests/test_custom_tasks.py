"""Custom tasks (a user's corpus and vocabulary): readers, checks, config and the CLI.

Golden fixtures under tests/fixtures/custom/: a PubTator corpus (one file opening with
a UTF-8 byte-order mark), the same documents in the BigBio KB schema (JSON Lines and a
JSON array), an HPO-style vocabulary as TSV and as OBO (an obsolete term, synonyms, an
alt_id) and an OBO file with a duplicated term id. Defects are one-line edits of them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml
from console import run_main
from synthetic import write_custom_corpus
from tiny_models import tiny_config
from typer.testing import CliRunner

from elcl.cli.app import app
from elcl.config import config_from_dict, load_config
from elcl.data.custom import clear_custom_cache, held_out_for_dev, load_task_corpus, task_ontology_of
from elcl.data.pubtator import parse_pubtator_file
from elcl.data.task_config import CustomTaskConfig, read_task_spec, task_data_hashes
from elcl.data.vocab import load_obo_vocabulary, load_tsv_vocabulary
from elcl.errors import ConfigError, CorpusFormatError, ElclError

FIX = Path(__file__).parent / "fixtures" / "custom"
runner = CliRunner()


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_custom_cache()
    yield
    clear_custom_cache()


def write_task(directory: Path, entry: dict, name: str = "task.yaml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(yaml.safe_dump(entry))
    return path


def fixture_copy(tmp_path: Path) -> Path:
    """The fixtures in a directory of the test's own (so a test may edit them)."""
    out = tmp_path / "fx"
    shutil.copytree(FIX, out)
    return out


def pubtator_entry(fx: Path, **over) -> dict:
    return {
        "name": "clinic",
        "files": {
            "train": str(fx / "train.pubtator"),
            "dev": str(fx / "dev.pubtator"),
            "test": str(fx / "test_bom.pubtator"),
        },
        "format": "pubtator",
        "ontology": {"file": str(fx / "vocab.tsv"), "format": "tsv"},
        **over,
    }


# --- vocabularies ---------------------------------------------------------------------


def test_tsv_vocabulary_header_synonyms_and_rows_of_one_id_merged() -> None:
    onto, counts = load_tsv_vocabulary(FIX / "vocab.tsv")
    assert onto.names == {
        "HP:0001658": ["myocardial infarction", "heart attack", "cardiac infarction"],
        "HP:0001250": ["seizure", "fits", "epileptic seizure"],
        "HP:0002315": ["headache"],
    }
    assert (counts.concepts, counts.names, counts.rows_merged) == (3, 7, 1)


def test_tsv_vocabulary_without_header_and_its_defects(tmp_path: Path) -> None:
    p = tmp_path / "v.tsv"
    p.write_text("T1\tfever\nT2\tcough\tbarking cough\n")
    assert load_tsv_vocabulary(p)[0].names == {"T1": ["fever"], "T2": ["cough", "barking cough"]}
    for text, needle in [
        ("T1\tfever\nT2\n", f"{p}:2: 1 tab-separated column(s); expected id<TAB>name"),
        ("T1\tfever\nT 2\tcough\n", f"{p}:2: concept id 'T 2': expected a non-empty id without spaces"),
        ("T1\t \n", f"{p}:1: concept T1 has an empty name"),
        ("id\tname\n", f"{p}: no concepts found"),
    ]:
        p.write_text(text)
        with pytest.raises(CorpusFormatError) as exc:
            load_tsv_vocabulary(p)
        assert str(exc.value).startswith(needle), str(exc.value)


def test_obo_vocabulary_drops_obsolete_terms_keeps_synonyms_and_maps_alt_ids() -> None:
    onto, counts = load_obo_vocabulary(FIX / "vocab.obo")
    assert onto.names == {
        "HP:0001658": ["Myocardial infarction", "heart attack", "cardiac infarction"],
        "HP:0001250": ["Seizure", "fits"],
        "HP:0000118": ["Phenotypic abnormality"],
    }
    assert counts.obsolete_dropped == 1 and "HP:0000001" not in onto.names
    assert "(1 obsolete terms dropped)" in onto.source
    # an alt_id, and an obsolete id replaced_by a live term, both score as that term
    assert onto.matches("HP:0001658", ["HP:0004948"]) and onto.matches("HP:0001250", ["HP:0000001"])
    assert not onto.matches("HP:0001250", ["HP:0004948"])


def test_obo_duplicate_term_id_is_an_error_naming_both_lines() -> None:
    with pytest.raises(CorpusFormatError) as exc:
        load_obo_vocabulary(FIX / "dup.obo")
    assert str(exc.value) == f"{FIX / 'dup.obo'}:9: term HP:0001250 is defined twice (first at line 5)"


# --- corpora --------------------------------------------------------------------------


def test_pubtator_file_opening_with_a_byte_order_mark_is_read() -> None:
    raw = (FIX / "test_bom.pubtator").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    docs = parse_pubtator_file(FIX / "test_bom.pubtator", id_parser=lambda r, t: ((r,), False)).documents
    assert [d.doc_id for d in docs] == ["3"] and docs[0].title == "Seizures in adults"
    assert [m.text for m in docs[0].mentions] == ["Seizures", "cardiac infarction", "case"]


def test_builtin_style_pubtator_with_bom_reads_like_without(tmp_path: Path) -> None:
    plain = "1|t|Aspirin\n1|a|Given daily.\n1\t0\t7\tAspirin\tChemical\tD001241\n\n"
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text(plain)
    b.write_bytes(b"\xef\xbb\xbf" + plain.encode())
    assert parse_pubtator_file(a).documents == parse_pubtator_file(b).documents


def test_custom_pubtator_task_ids_composites_unlinkable_and_types(tmp_path: Path) -> None:
    task = read_task_spec(str(write_task(tmp_path, pubtator_entry(FIX))))
    assert isinstance(task, CustomTaskConfig)
    corpus = load_task_corpus(task, None)
    train = corpus.mentions("train")
    assert [m.concept_ids for m in train] == [
        ("HP:0001658",),
        ("HP:0001658",),
        ("HP:0001250",),
        ("HP:0002315",),
        ("HP:0001250", "HP:0002315"),
    ]
    assert [m.composite for m in train] == [False, False, False, False, True]
    test = corpus.mentions("test")
    assert [(m.text, m.unlinkable) for m in test] == [
        ("Seizures", False),
        ("cardiac infarction", False),
        ("case", True),
    ]
    only = load_task_corpus(task.model_copy(update={"types": ["Disease"]}), None)
    assert [m.text for m in only.mentions("test")] == ["Seizures", "cardiac infarction"]
    with pytest.raises(CorpusFormatError, match="train.pubtator: clinic: the train split has no mentions of this task"):
        load_task_corpus(task.model_copy(update={"types": ["Finding"]}), None)


def test_bigbio_json_and_jsonl_give_the_pubtator_documents(tmp_path: Path) -> None:
    """The same documents in both formats: same texts, offsets and ids (db_name joined)."""
    bb = {
        "name": "bb",
        "format": "bigbio_kb",
        "files": {"train": str(FIX / "train.jsonl"), "test": str(FIX / "test.json"), "dev": str(FIX / "train.jsonl")},
        "ontology": {"file": str(FIX / "vocab.obo"), "format": "obo"},
    }
    with pytest.raises(CorpusFormatError, match="document 1 is in both train and dev"):
        load_task_corpus(CustomTaskConfig.model_validate(bb), None)
    bb["files"].pop("dev")
    corpus = load_task_corpus(CustomTaskConfig.model_validate(bb), None)
    pub = load_task_corpus(read_task_spec(str(write_task(tmp_path, pubtator_entry(FIX)))), None)
    docs = {d.doc_id: d for s in ("train", "dev") for d in corpus.documents(s)}
    for d in pub.documents("train"):
        assert docs[d.doc_id].text == d.text
        ours = [(m.start, m.end, m.concept_ids, m.composite) for m in docs[d.doc_id].mentions if not m.unlinkable]
        assert ours == [(m.start, m.end, m.concept_ids, m.composite) for m in d.mentions]
    # no dev file: one of the two training documents is held out, chosen by its id
    assert len(corpus.documents("dev")) == 1 and len(corpus.documents("train")) == 1
    assert {d.doc_id for d in corpus.documents("dev")} == held_out_for_dev(["1", "2"], 0.1, "bb")
    # an entity without normalisation is unlinkable; a discontinuous one spans its pieces
    (cause,) = [m for d in docs.values() for m in d.mentions if m.text == "cause"]
    assert cause.unlinkable and cause.concept_ids == ()
    (disc,) = [m for m in corpus.mentions("test") if m.start == 29]
    assert (disc.end, disc.text, disc.concept_ids) == (47, "cardiac infarction", ("HP:0001658",))


def test_dev_hold_out_is_fixed_and_never_empty_or_everything() -> None:
    ids = [str(i) for i in range(200)]
    a = held_out_for_dev(ids, 0.1, "t")
    assert a == held_out_for_dev(list(reversed(ids)), 0.1, "t")
    assert 5 < len(a) < 40
    assert len(held_out_for_dev(["x", "y"], 0.01, "t")) == 1
    assert len(held_out_for_dev(["x", "y"], 0.99, "t")) == 1


def _defect(fx: Path, kind: str) -> tuple[dict, str]:
    """(task entry, expected error line) of one defect made in the fixture copy ``fx``."""
    pub = pubtator_entry(fx)
    if kind == "pubtator_offsets":
        p = fx / "train.pubtator"
        p.write_text(p.read_text().replace("1\t0\t12\tHeart attack", "1\t0\t5\tHeart attack"))
        return pub, f"{p}:3: offsets 0-5 give 'Heart' but the mention text is 'Heart attack'"
    if kind == "pubtator_title":
        p = fx / "train.pubtator"
        p.write_text(p.read_text().replace("1|t|Heart attack risk\n", ""))
        return pub, f"{p}:1: abstract of 1 without its title line '1|t|...' just before"
    if kind == "pubtator_id":
        p = fx / "dev.pubtator"
        p.write_text(p.read_text().replace("HP:0009999", "HP:99"))
        return {**pub, "id_pattern": r"HP:\d{7}"}, (
            f"{p}:3: unknown concept id format 'HP:99' for type 'Disease' (expected ids matching 'HP:\\\\d{{7}}'"
        )
    if kind == "pubtator_bom_in_json":
        p = fx / "test.json"
        p.write_bytes(b"\xef\xbb\xbf" + p.read_bytes().replace(b"[[29, 36]", b"[[28, 35]"))
        entry = {"name": "bb", "format": "bigbio_kb", "files": {"train": str(fx / "train.jsonl"), "test": str(p)}}
        return entry, f"{p}:2: document 3 entity e2: offsets 28-35 give ' cardia' but its text is 'cardiac'"
    bb = {
        "name": "bb",
        "format": "bigbio_kb",
        "files": {"train": str(fx / "train.jsonl"), "test": str(fx / "test.json")},
        "ontology": {"file": str(fx / "vocab.obo"), "format": "obo"},
    }
    if kind == "bigbio_offsets":
        p = fx / "train.jsonl"
        p.write_text(p.read_text().replace('"offsets": [[13, 20]]', '"offsets": [[12, 19]]'))
        return bb, f"{p}:2: document 2 entity e2: offsets 12-19 give ' seizur' but its text is 'seizure'"
    if kind == "bigbio_title":
        p = fx / "test.json"
        rec = json.loads(p.read_text())
        rec.append({"document_id": "4", "passages": [], "entities": []})
        p.write_text(json.dumps(rec, indent=1))
        line = p.read_text().splitlines().index(" {", 2) + 1
        return bb, f"{p}:{line}: document 4 has no passages: no title (the first passage is the title)"
    if kind == "bigbio_id":
        p = fx / "train.jsonl"
        p.write_text(p.read_text().replace('"db_id": "0002315"}]', '"db_id": "2315 x"}]'))
        return bb, f"{p}:2: document 2 entity e1: unknown concept id format 'HP:2315 x' for type 'Disease'"
    if kind == "two_splits":
        return {**pub, "files": {**pub["files"], "dev": str(fx / "train.pubtator")}}, (
            f"{fx / 'train.pubtator'}: task clinic: document 1 is in both train and dev"
        )
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "pubtator_offsets",
        "pubtator_title",
        "pubtator_id",
        "pubtator_bom_in_json",
        "bigbio_offsets",
        "bigbio_title",
        "bigbio_id",
        "two_splits",
    ],
)
def test_defects_are_one_line_file_line_exit_2_and_nothing_written(tmp_path, capsys, monkeypatch, kind) -> None:
    fx = fixture_copy(tmp_path)
    entry, expected = _defect(fx, kind)
    task_file = write_task(tmp_path / "t", entry)
    code, err = run_main(["data", "stats", str(task_file)], capsys, monkeypatch)
    assert code == 2 and err.count("\n") == 1, err
    assert err.removeprefix("error: ").startswith(expected), err
    # elcl train stops on the same line before writing anything
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"name": "x", "output_dir": str(tmp_path / "runs"), "tasks": [str(task_file)]}))
    code, err = run_main(["train", "--config", str(cfg)], capsys, monkeypatch)
    assert code == 2 and err.removeprefix("error: ").startswith(expected), err
    assert not (tmp_path / "runs").exists()


# --- task specs, config ---------------------------------------------------------------


def test_read_task_spec_builtin_file_and_errors(tmp_path: Path) -> None:
    assert read_task_spec("ncbi_disease") == "ncbi_disease"
    with pytest.raises(ConfigError, match="unknown corpus/task 'ncbi'; known: ncbi_disease, .*; or a task file"):
        read_task_spec("ncbi")
    with pytest.raises(ConfigError, match="task file not found"):
        read_task_spec(str(tmp_path / "none.yaml"))
    # relative paths of the entry resolve against the YAML's own directory, not the cwd
    sub = tmp_path / "tasks"
    shutil.copytree(FIX, tmp_path / "data")
    write_task(sub, {"name": "c", "files": {"train": "../data/train.pubtator", "test": "../data/test_bom.pubtator"}})
    task = read_task_spec("tasks/task.yaml", base_dir=tmp_path)
    assert isinstance(task, CustomTaskConfig) and task.files.train == (tmp_path / "tasks/../data/train.pubtator")
    with pytest.raises(ConfigError, match=r"task key 'format': invalid value 'brat'"):
        read_task_spec(str(write_task(sub, {"name": "c", "format": "brat", "files": {"train": "a", "test": "b"}})))
    with pytest.raises(ConfigError, match=r"task key 'name': 'bc5cdr' is a built-in task"):
        read_task_spec(str(write_task(sub, {"name": "bc5cdr", "files": {"train": "a", "test": "b"}})))
    with pytest.raises(ConfigError, match=r"task key 'files.test': Field required"):
        read_task_spec(str(write_task(sub, {"name": "c", "files": {"train": "a"}})))


def test_task_data_hashes_are_the_files_sha256_and_pinning_catches_a_change(tmp_path: Path) -> None:
    fx = fixture_copy(tmp_path)
    task = CustomTaskConfig.model_validate(pubtator_entry(fx))
    hashes = task_data_hashes(task)
    assert sorted(hashes) == ["dev", "ontology", "test", "train"]
    assert hashes["ontology"] == hashlib.sha256((fx / "vocab.tsv").read_bytes()).hexdigest()
    pinned = task.pinned()
    assert pinned.sha256 == hashes
    load_task_corpus(pinned, None)
    with (fx / "vocab.tsv").open("a") as fh:
        fh.write("HP:0000002\tnew term\n")
    with pytest.raises(ElclError, match=r"vocab.tsv: content changed since the run read it \(task clinic ontology"):
        task_ontology_of(pinned, None)


def test_builtin_task_data_hashes_name_their_files(tmp_path: Path) -> None:
    from synthetic import write_synthetic_corpora

    data = write_synthetic_corpora(tmp_path / "data")
    hashes = task_data_hashes("ncbi_disease", data)
    assert sorted(hashes) == ["dev", "test", "train"]
    assert hashes["train"] == hashlib.sha256((data / "ncbi_disease/NCBItrainset_corpus.txt").read_bytes()).hexdigest()


def test_tasks_and_orders_must_agree() -> None:
    with pytest.raises(ConfigError) as exc:
        config_from_dict({"tasks": ["ncbi_disease"], "orders": [["ncbi_disease", "bc5cdr_disease"]]})
    msg = str(exc.value)
    assert "config keys 'tasks' and 'orders' disagree: order 0 uses 'bc5cdr_disease'" in msg and "\n" not in msg
    with pytest.raises(ConfigError, match="'bc5cdr_chemical' in 'tasks' is in no order"):
        config_from_dict({"tasks": ["ncbi_disease", "bc5cdr_chemical"], "orders": [["ncbi_disease"], ["ncbi_disease"]]})
    # orders alone: tasks are the orders' tasks
    cfg = config_from_dict({"orders": [["ncbi_disease", "bc5cdr_disease"], ["bc5cdr_disease", "ncbi_disease"]]})
    assert cfg.task_names() == ["ncbi_disease", "bc5cdr_disease"]


def test_quick_config_with_a_tasks_override_is_refused_not_silently_the_orders() -> None:
    with pytest.raises(ConfigError, match="config keys 'tasks' and 'orders' disagree"):
        load_config("configs/quick.yaml", ["tasks=[ncbi_disease]"])
    cfg = load_config("configs/quick.yaml", ["tasks=[ncbi_disease]", "orders=null"])
    assert cfg.task_orders() == [["ncbi_disease"]]


def test_every_shipped_config_still_loads() -> None:
    for path in sorted(Path("configs").glob("*.yaml")):
        cfg = load_config(path)
        assert all(t in cfg.task_names() for order in cfg.task_orders() for t in order), path


def test_config_mixes_builtin_names_entries_and_task_files(tmp_path: Path) -> None:
    fx = fixture_copy(tmp_path)
    write_task(fx, {"name": "bb", "format": "bigbio_kb", "files": {"train": "train.jsonl", "test": "test.json"}})
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "c.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "mix",
                "tasks": [
                    "ncbi_disease",
                    "../fx/task.yaml",
                    {"name": "clinic", "files": {"train": "../fx/train.pubtator", "test": "../fx/test_bom.pubtator"}},
                ],
                "orders": [["clinic", "ncbi_disease", "bb"]],
            }
        )
    )
    cfg = load_config(conf / "c.yaml")
    bb, clinic = cfg.task_ref("bb"), cfg.task_ref("clinic")
    assert isinstance(bb, CustomTaskConfig) and bb.files.train.resolve() == (fx / "train.jsonl").resolve()
    assert isinstance(clinic, CustomTaskConfig) and clinic.files.test.resolve() == (fx / "test_bom.pubtator").resolve()
    assert cfg.task_ref("ncbi_disease") == "ncbi_disease"
    # the dumped config is self-contained: absolute paths, read back the same
    again = config_from_dict(cfg.to_dict())
    assert again.task_ref("clinic") == clinic and again.to_dict() == cfg.to_dict()
    with pytest.raises(ConfigError, match="unknown task 'clinc'"):
        load_config(conf / "c.yaml", ["orders=[[clinc, ncbi_disease, bb]]"])


# --- CLI on custom tasks --------------------------------------------------------------


def test_data_stats_reports_gold_ids_absent_from_the_ontology(tmp_path: Path) -> None:
    task_file = write_task(tmp_path, pubtator_entry(FIX))
    res = runner.invoke(app, ["data", "stats", str(task_file), "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.output)["clinic"]
    assert [got[s]["mentions"] for s in ("train", "dev", "test")] == [5, 1, 3]
    assert got["test"]["unlinkable"] == 1 and got["train"]["composite"] == 1
    onto = got["ontology"]
    assert onto["concepts"] == 3 and onto["source"].startswith("TSV vocabulary")
    assert onto["splits"]["dev"]["gold_absent"] == 1 and onto["splits"]["dev"]["gold_absent_ids"] == {"HP:0009999": 1}
    assert onto["splits"]["train"]["gold_absent"] == 0
    table = runner.invoke(app, ["data", "stats", str(task_file)])
    assert "clinic dev: 1/1 linkable mentions have gold ids absent from the ontology: HP:0009999 (1)" in table.output


def test_data_candidates_on_a_task_file_and_on_a_config_task(tmp_path: Path) -> None:
    obo = {**pubtator_entry(FIX), "ontology": {"file": str(FIX / "vocab.obo"), "format": "obo"}}
    task_file = write_task(tmp_path, obo)
    res = runner.invoke(app, ["data", "candidates", str(task_file), "--k", "1", "--k", "3", "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.output)
    assert got["task"] == "clinic" and "(1 obsolete terms dropped)" in got["ontology"] and got["concepts"] == 3
    # test: 'Seizures' and 'cardiac infarction' (a synonym, verbatim) are found at rank 1
    assert got["splits"]["test"]["linkable"] == 2 and got["splits"]["test"]["recall"] == {"1": 1.0, "3": 1.0}
    # dev's only mention is annotated with an id the vocabulary lacks: no rank finds it
    assert got["splits"]["dev"]["gold_absent"] == 1 and got["splits"]["dev"]["recall"]["3"] == 0.0
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"name": "x", "tasks": [str(task_file)]}))
    by_cfg = runner.invoke(
        app, ["data", "candidates", "clinic", "--config", str(cfg), "--k", "1", "--k", "3", "--json"]
    )
    assert by_cfg.exit_code == 0, by_cfg.output

    def scores(out: dict) -> dict:
        return {s: (r["linkable"], r["recall"], r["gold_absent"]) for s, r in out["splits"].items()}

    assert scores(json.loads(by_cfg.output)) == scores(got)


def test_custom_tasks_share_no_document_across_tasks(tmp_path: Path) -> None:
    """A custom task's test document that another task trains on leaves that task's training data."""
    from elcl.training.tasks import sequence_train_removals

    fx = fixture_copy(tmp_path)
    a = pubtator_entry(fx, name="a")  # train 1, 2; dev 9; test 3
    (fx / "b_train.pubtator").write_bytes(
        (fx / "train.pubtator").read_bytes() + (fx / "test_bom.pubtator").read_bytes()[3:]
    )
    (fx / "b_dev.pubtator").write_text((fx / "dev.pubtator").read_text().replace("9", "7"))
    (fx / "b_test.pubtator").write_text((fx / "dev.pubtator").read_text().replace("9", "8"))
    files = {
        "train": str(fx / "b_train.pubtator"),
        "dev": str(fx / "b_dev.pubtator"),
        "test": str(fx / "b_test.pubtator"),
    }
    b = {**pubtator_entry(fx, name="b"), "files": files}  # train 1, 2, 3; dev 7; test 8
    cfg = config_from_dict({"tasks": [a, b]})
    removals = sequence_train_removals(["a", "b"], cfg)
    assert removals["b"].doc_ids == frozenset({"3"}) and removals["b"].by_task == {"a": 1}
    assert removals["a"].doc_ids == frozenset()


@pytest.mark.slow
def test_train_link_and_resume_on_a_custom_task_end_to_end(tmp_path, capsys, monkeypatch) -> None:
    own = write_custom_corpus(tmp_path / "own")
    task = write_task(
        own,
        {
            "name": "clinic",
            "files": {"train": "train.pubtator", "dev": "dev.pubtator", "test": "test.pubtator"},
            "ontology": {"file": "vocab.tsv", "format": "tsv"},
        },
    )
    later = write_custom_corpus(tmp_path / "later", seed=2, first_pmid=6001)
    cfg = tiny_config(
        tmp_path,
        "own",
        [
            str(task),
            {
                "name": "clinic_q2",
                "files": {k: str(later / f"{k}.pubtator") for k in ("train", "test")},
                "ontology": {"file": str(later / "vocab.tsv"), "format": "tsv"},
            },
        ],
        3,
        method={"name": "ewc", "ewc": {"lambda": 10.0}},
        curvature={"max_examples": 8, "batch_size": 4},
        data={"ontology": "auto"},
        train={"num_threads": 1},
    )
    path = tmp_path / "own.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = runner.invoke(app, ["train", "--config", str(path)])
    assert res.exit_code == 0, res.output
    run = tmp_path / "runs" / "own" / "ewc-lam10-o0-s3"
    assert json.loads((run / "run.json").read_text())["status"] == "done"
    stored = yaml.safe_load((run / "config.yaml").read_text())
    entry, second = stored["tasks"]
    assert entry["name"] == "clinic" and entry["files"]["train"] == str(own / "train.pubtator")
    assert "dev" not in second["files"] and sorted(second["sha256"]) == ["ontology", "test", "train"]
    assert entry["sha256"]["ontology"] == hashlib.sha256((own / "vocab.tsv").read_bytes()).hexdigest()
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert {(r["step"], r["eval_task"], r["split"]) for r in rows} == {
        (step, task, split) for step in (0, 1) for task in ("clinic", "clinic_q2") for split in ("dev", "test")
    }
    assert (run / "curvature").is_dir() and any((run / "curvature").iterdir())

    # linking from the run directory alone: the custom task's ontology comes from config.yaml
    out = tmp_path / "linked.jsonl"
    code, err = run_main(["link", str(run), "-i", str(own / "test.pubtator"), "--out", str(out)], capsys, monkeypatch)
    assert code == 0, err
    test_row = next(r for r in rows if r["step"] == 1 and r["eval_task"] == "clinic" and r["split"] == "test")
    code, err = run_main(
        ["link", str(run), "--task", "clinic", "-i", str(own / "test.pubtator"), "--out", str(out)], capsys, monkeypatch
    )
    assert code == 0, err
    assert f"acc@1 {test_row['acc1']:.4f}" in err and "against clinic (4 concepts)" in err
    assert len(out.read_text().splitlines()) == test_row["n"]

    # an empty input is an error naming the file, not "linked 0 mentions"
    empty = tmp_path / "empty.pubtator"
    empty.write_text("")
    code, err = run_main(["link", str(run), "-i", str(empty)], capsys, monkeypatch)
    assert code == 2 and err.count("\n") == 1 and f"{empty}: empty input, no mention to link" in err

    # the data changed after the run: linking, evaluating again or resuming refuses it
    with (own / "vocab.tsv").open("a") as fh:
        fh.write("HP:0000003\tnew term\n")
    clear_custom_cache()
    code, err = run_main(["link", str(run), "--task", "clinic", "-i", str(own / "test.pubtator")], capsys, monkeypatch)
    assert code == 2 and err.count("\n") == 1 and f"{own / 'vocab.tsv'}: content changed since the run read it" in err
    resumed = runner.invoke(app, ["train", "--config", str(path), "--resume", str(tmp_path / "runs" / "own")])
    assert isinstance(resumed.exception, ElclError)
    assert f"{own / 'vocab.tsv'}: content changed since the run read it" in str(resumed.exception)
