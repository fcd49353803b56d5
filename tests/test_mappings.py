"""External id mappings: map, remap, resolve (one and many), find, upsert, and the upsert race."""

from __future__ import annotations

import multiprocessing
import time

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from flask_integrations import IntegrationMapping, MappingAlreadyClaimed, ValidationError
from flask_integrations.clock import utcnow
from flask_integrations.mappings import claims
from tests.conftest import reset_tables
from tests.helpers.app import db, make_app, recorded_statements
from tests.helpers.processes import run_to_completion


class Customer(db.Model):
    __tablename__ = "fi_test_customers"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    email: Mapped[str | None] = mapped_column(sa.String(100))


class Contact(db.Model):
    __tablename__ = "fi_test_contacts"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))


class Product(db.Model):
    __tablename__ = "fi_test_products"
    sku: Mapped[str] = mapped_column(sa.String(20), primary_key=True)


def saved(*objects):
    db.session.add_all(objects)
    db.session.commit()
    return objects if len(objects) > 1 else objects[0]


def mapping_rows():
    table = db.metadata.tables["integration_mappings"]
    return db.session.execute(
        sa.select(table.c.external_id, table.c.internal_type, table.c.internal_id)
    ).all()


# -- map / resolve / find --------------------------------------------------------------------------


def test_map_then_resolve_returns_the_object(integration):
    customer = saved(Customer(name="Ada"))
    integration.map_external_id("cus_1", customer)
    db.session.commit()
    db.session.expire_all()
    assert integration.resolve_mapping("cus_1", Customer) is customer


def test_mapping_stores_the_table_name_and_the_key_as_text(integration):
    customer = saved(Customer(name="Ada"))
    mapping = integration.map_external_id(42, customer)
    assert isinstance(mapping, IntegrationMapping)
    assert mapping_rows() == [("42", "fi_test_customers", str(customer.id))]


def test_mapping_the_same_object_again_is_a_no_op(integration):
    customer = saved(Customer(name="Ada"))
    first = integration.map_external_id("cus_1", customer)
    assert integration.map_external_id("cus_1", customer) is first
    assert len(mapping_rows()) == 1


def test_another_object_claiming_the_id_raises(integration):
    ada, bob = saved(Customer(name="Ada"), Customer(name="Bob"))
    integration.map_external_id("cus_1", ada)
    db.session.commit()
    with pytest.raises(MappingAlreadyClaimed) as raised:
        integration.map_external_id("cus_1", bob)
    assert (raised.value.external_id, raised.value.internal_id) == ("cus_1", str(ada.id))


def test_a_claim_lost_at_the_constraint_keeps_the_callers_transaction(integration, monkeypatch):
    ada, bob = saved(Customer(name="Ada"), Customer(name="Bob"))
    table = db.metadata.tables["integration_mappings"]
    with db.engine.begin() as other:  # another process mapped the id after our lookup would have run
        other.execute(
            sa.insert(table).values(
                integration_id=integration.id,
                external_id="cus_1",
                internal_type="fi_test_customers",
                internal_id=str(ada.id),
                created_at=utcnow(),
                updated_at=utcnow(),
            )
        )
    carol = Customer(name="Carol")
    db.session.add(carol)
    db.session.flush()
    real_find = claims.find_mapping
    calls = []

    def find_nothing_first(*args):
        calls.append(args)
        return None if len(calls) == 1 else real_find(*args)

    monkeypatch.setattr(claims, "find_mapping", find_nothing_first)
    with pytest.raises(MappingAlreadyClaimed):
        integration.map_external_id("cus_1", bob)
    db.session.commit()
    assert db.session.scalar(sa.select(Customer).where(Customer.name == "Carol")) is carol


def test_one_external_id_may_map_one_object_of_each_type(integration):
    customer, contact = saved(Customer(name="Ada"), Contact(name="Ada"))
    integration.map_external_id("acct_1", customer)
    integration.map_external_id("acct_1", contact)
    assert integration.resolve_mapping("acct_1", Customer) is customer
    assert integration.resolve_mapping("acct_1", Contact) is contact


def test_mappings_belong_to_their_integration(integration, ext):
    other = ext.create("loose", "Other", {})
    ada, bob = saved(Customer(name="Ada"), Customer(name="Bob"))
    integration.map_external_id("cus_1", ada)
    other.map_external_id("cus_1", bob)
    assert other.resolve_mapping("cus_1", Customer) is bob
    assert integration.find_external_id(bob) is None


def test_remap_moves_the_id_to_another_object(integration):
    ada, bob = saved(Customer(name="Ada"), Customer(name="Bob"))
    integration.map_external_id("cus_1", ada)
    integration.remap_external_id("cus_1", bob)
    assert integration.resolve_mapping("cus_1", Customer) is bob
    assert integration.find_external_id(ada) is None
    assert len(mapping_rows()) == 1


def test_remap_of_an_unmapped_id_maps_it(integration):
    ada = saved(Customer(name="Ada"))
    integration.remap_external_id("cus_9", ada)
    assert integration.find_external_id(ada) == "cus_9"


def test_resolve_of_an_unknown_id_is_none(integration):
    assert integration.resolve_mapping("nope", Customer) is None


def test_resolve_of_a_deleted_object_is_none(integration):
    ada = saved(Customer(name="Ada"))
    integration.map_external_id("cus_1", ada)
    db.session.delete(ada)
    db.session.commit()
    assert integration.resolve_mapping("cus_1", Customer) is None


def test_find_external_id(integration):
    ada, bob = saved(Customer(name="Ada"), Customer(name="Bob"))
    integration.map_external_id("cus_1", ada)
    assert integration.find_external_id(ada) == "cus_1"
    assert integration.find_external_id(bob) is None
    assert integration.find_external_id(Customer(name="never saved")) is None


def test_a_pending_object_is_flushed_before_it_is_mapped(integration):
    pending = Customer(name="Pending")
    db.session.add(pending)
    integration.map_external_id("cus_1", pending)
    assert pending.id is not None and integration.find_external_id(pending) == "cus_1"


def test_an_object_outside_the_session_cannot_be_mapped(integration):
    with pytest.raises(ValidationError, match="must be added to the session"):
        integration.map_external_id("cus_1", Customer(name="Transient"))


def test_string_primary_keys(integration):
    product = saved(Product(sku="SKU-1"))
    integration.map_external_id("prod_1", product)
    assert integration.resolve_mapping("prod_1", Product) is product
    assert integration.resolve_mappings(["prod_1"], Product) == {"prod_1": product}


@pytest.mark.parametrize("bad", ["", "x" * 501, True, 1.5, None])
def test_external_ids_are_validated(integration, bad):
    ada = saved(Customer(name="Ada"))
    with pytest.raises(ValidationError, match="external_id"):
        integration.map_external_id(bad, ada)


def test_mapping_methods_flush_and_leave_the_commit_to_the_caller(integration):
    ada = saved(Customer(name="Ada"))
    integration.map_external_id("cus_1", ada)
    integration.upsert_by_external_id("cus_2", Customer, {"name": "Bob"})
    db.session.rollback()
    assert mapping_rows() == []
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Customer)) == 1


# -- resolve many ----------------------------------------------------------------------------------


def test_resolve_mappings_answers_every_id_as_given(integration):
    ada, bob = saved(Customer(name="Ada"), Customer(name="Bob"))
    integration.map_external_id(1, ada)
    integration.map_external_id("2", bob)
    assert integration.resolve_mappings([1, "2", "3"], Customer) == {1: ada, "2": bob, "3": None}
    assert integration.resolve_mappings([], Customer) == {}


def test_resolve_mappings_skips_deleted_objects(integration):
    ada = saved(Customer(name="Ada"))
    integration.map_external_id("cus_1", ada)
    db.session.delete(ada)
    db.session.commit()
    assert integration.resolve_mappings(["cus_1"], Customer) == {"cus_1": None}


def test_resolve_mappings_of_a_thousand_ids_runs_two_queries(integration):
    customers = [Customer(name=f"c{n}") for n in range(1000)]
    db.session.add_all(customers)
    db.session.flush()
    now = utcnow()
    db.session.execute(
        sa.insert(db.metadata.tables["integration_mappings"]),
        [
            {
                "integration_id": integration.id,
                "external_id": f"cus_{n}",
                "internal_type": "fi_test_customers",
                "internal_id": str(customer.id),
                "created_at": now,
                "updated_at": now,
            }
            for n, customer in enumerate(customers)
            if n % 10  # every tenth id stays unmapped
        ],
    )
    db.session.commit()
    assert integration.id  # loaded again after the commit, before counting
    for customer in customers:
        db.session.expunge(customer)
    with recorded_statements() as statements:
        found = integration.resolve_mappings([f"cus_{n}" for n in range(1000)], Customer)
    assert len(statements) == 2
    assert len(found) == 1000
    assert found["cus_0"] is None and found["cus_1"].name == "c1"
    assert sum(obj is not None for obj in found.values()) == 900


# -- upsert ----------------------------------------------------------------------------------------


def test_upsert_creates_and_maps_a_new_object(integration):
    customer = integration.upsert_by_external_id("cus_1", Customer, {"name": "Ada", "email": "a@x.io"})
    db.session.commit()
    assert customer.id is not None and customer.email == "a@x.io"
    assert integration.find_external_id(customer) == "cus_1"


def test_upsert_updates_the_mapped_object(integration):
    first = integration.upsert_by_external_id("cus_1", Customer, {"name": "Ada"})
    db.session.commit()
    again = integration.upsert_by_external_id("cus_1", Customer, {"name": "Ada L."})
    db.session.commit()
    assert again is first and first.name == "Ada L."
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Customer)) == 1


def test_upsert_recreates_a_deleted_object_and_moves_the_mapping(integration):
    first = integration.upsert_by_external_id("cus_1", Customer, {"name": "Ada"})
    db.session.commit()
    db.session.delete(first)
    db.session.commit()
    second = integration.upsert_by_external_id("cus_1", Customer, {"name": "Ada again"})
    db.session.commit()
    assert integration.resolve_mapping("cus_1", Customer) is second
    assert len(mapping_rows()) == 1


def test_upsert_raises_the_models_own_integrity_error(integration):
    with pytest.raises(sa.exc.IntegrityError):
        integration.upsert_by_external_id("cus_1", Customer, {"email": "no name"})
    db.session.rollback()
    assert mapping_rows() == []


# -- races (real processes, PostgreSQL) ------------------------------------------------------------


def _upsert_worker(database_url: str, integration_id: int, barrier, worker: int, results) -> None:
    app = make_app(database_url)
    with app.app_context():
        integration = app.extensions["integrations"].get(integration_id)
        barrier.wait(30)
        customer = integration.upsert_by_external_id("cus_race", Customer, {"name": f"worker {worker}"})
        time.sleep(0.2)  # hold the transaction so the others really wait on it
        db.session.commit()
        results.put(customer.id)
        db.session.remove()


def _map_worker(database_url: str, integration_id: int, customer_id: int, barrier, results) -> None:
    app = make_app(database_url)
    with app.app_context():
        integration = app.extensions["integrations"].get(integration_id)
        customer = db.session.get(Customer, customer_id)
        barrier.wait(30)
        try:
            integration.map_external_id("cus_race", customer)
            time.sleep(0.2)
            db.session.commit()
            results.put("mapped")
        except MappingAlreadyClaimed:
            results.put("claimed")
        db.session.remove()


@pytest.mark.slow
def test_ten_concurrent_upserts_leave_one_object_and_one_mapping(server_database_url):
    app = make_app(server_database_url)
    with app.app_context():
        reset_tables()
        integration_id = app.extensions["integrations"].create("loose", "Shared", {}).id
        db.session.remove()
    spawn = multiprocessing.get_context("spawn")
    barrier, results = spawn.Barrier(10), spawn.Queue()
    run_to_completion(
        [
            spawn.Process(
                target=_upsert_worker, args=(server_database_url, integration_id, barrier, n, results)
            )
            for n in range(10)
        ],
        120,
    )
    returned = {results.get(timeout=10) for _ in range(10)}
    with app.app_context():
        customers = db.session.scalars(sa.select(Customer)).all()
        assert len(customers) == 1
        assert returned == {customers[0].id}
        assert mapping_rows() == [("cus_race", "fi_test_customers", str(customers[0].id))]


@pytest.mark.slow
def test_concurrent_claims_of_one_id_by_different_objects_have_one_winner(server_database_url):
    app = make_app(server_database_url)
    with app.app_context():
        reset_tables()
        integration_id = app.extensions["integrations"].create("loose", "Shared", {}).id
        customers = [Customer(name=f"c{n}") for n in range(6)]
        db.session.add_all(customers)
        db.session.commit()
        customer_ids = [c.id for c in customers]
        db.session.remove()
    spawn = multiprocessing.get_context("spawn")
    barrier, results = spawn.Barrier(6), spawn.Queue()
    run_to_completion(
        [
            spawn.Process(
                target=_map_worker, args=(server_database_url, integration_id, cid, barrier, results)
            )
            for cid in customer_ids
        ],
        120,
    )
    outcomes = sorted(results.get(timeout=10) for _ in range(6))
    assert outcomes == ["claimed"] * 5 + ["mapped"]
    with app.app_context():
        assert len(mapping_rows()) == 1
