"""The state table: model configs, per-model locks, active rollouts (task tokens) and history.

One DynamoDB table, `pk`/`sk` strings:
  MODEL#<m>    / CONFIG                the model's config document
  MODEL#<m>    / LOCK                  owner (execution name), expires_at (epoch s)
  MODEL#<m>    / PENDING               the newest request coalesced while locked
  MODEL#<m>    / TRAINED               the object (key, ETag) a data-triggered run last trained and evaluated
  MODEL#<m>    / ROLLOUT               the active rollout: run, previous stable image, phase, task token
  MODEL#<m>    / CHAMPION              the version in production (image, artifact, metric)
  MODEL#<m>    / VERSION#<v>           each built version: its serving image (digest), run, outcome, promoted_at
  MODEL#<m>    / HISTORY#<iso>#<run>   one record per finished run, newest last
  MODEL#<m>    / ALARM#<iso>#<alarm>   alarms that fired while no rollout was active
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from modelops.adapters.aws import error_code
from modelops.ports import LockResult


def _pk(model: str) -> dict[str, str]:
    return {"S": f"MODEL#{model}"}


def _doc_item(model: str, sk: str, doc: dict[str, Any]) -> dict[str, Any]:
    """The item that stores `doc` under the model's `sk` (the inverse of `_doc`)."""
    return {"pk": _pk(model), "sk": {"S": sk}, "doc": {"S": json.dumps(doc, default=_json_default)}}


def _doc(item: dict[str, Any]) -> dict[str, Any]:
    return json.loads(item["doc"]["S"]) if "doc" in item else {}


class StateStore:
    """The `Store` port over the state table; `client` is a boto3 DynamoDB client (tests pass moto's)."""

    def __init__(self, table: str, client: Any) -> None:
        self.table = table
        self.client = client

    # --- documents ---------------------------------------------------------------------------
    def _get(self, model: str, sk: str, *, consistent: bool = True) -> dict[str, Any] | None:
        item: dict[str, Any] | None = self.client.get_item(
            TableName=self.table, Key={"pk": _pk(model), "sk": {"S": sk}}, ConsistentRead=consistent
        ).get("Item")
        return item

    def get_doc(self, model: str, sk: str) -> dict[str, Any] | None:
        item = self._get(model, sk)
        return None if item is None else _doc(item)

    def put_doc(self, model: str, sk: str, doc: dict[str, Any], *, expires_at: int | None = None) -> None:
        item = _doc_item(model, sk, doc)
        if expires_at is not None:
            item["expires_at"] = {"N": str(expires_at)}
        self.client.put_item(TableName=self.table, Item=item)

    def query_docs(
        self, model: str, prefix: str, *, limit: int = 50, newest_first: bool = True
    ) -> list[dict[str, Any]]:
        response = self.client.query(
            TableName=self.table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues={":pk": _pk(model), ":prefix": {"S": prefix}},
            ScanIndexForward=not newest_first,
            Limit=limit,
        )
        return [_doc(item) for item in response.get("Items", [])]

    def history(self, model: str) -> Iterator[dict[str, Any]]:
        """The model's HISTORY# records, newest first, every page (read as the caller iterates)."""
        query: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": _pk(model), ":prefix": {"S": "HISTORY#"}},
            "ScanIndexForward": False,
        }
        while True:
            response = self.client.query(**query)
            for item in response.get("Items", []):
                yield _doc(item)
            if "LastEvaluatedKey" not in response:
                return
            query["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    # --- model configs -----------------------------------------------------------------------
    def get_model_document(self, model: str) -> dict[str, Any] | None:
        return self.get_doc(model, "CONFIG")

    def model_names(self) -> list[str]:
        """Every model with a stored config: a Scan of the table's CONFIG items (keys only), all pages."""
        scan: dict[str, Any] = {
            "TableName": self.table,
            "FilterExpression": "sk = :config",
            "ExpressionAttributeValues": {":config": {"S": "CONFIG"}},
            "ProjectionExpression": "pk",
        }
        names: set[str] = set()
        while True:
            response = self.client.scan(**scan)
            names.update(item["pk"]["S"].removeprefix("MODEL#") for item in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return sorted(names)
            scan["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def put_model_document(self, model: str, document: dict[str, Any]) -> None:
        self.put_doc(model, "CONFIG", document)

    # --- the per-model lock ------------------------------------------------------------------
    def acquire_lock(
        self, model: str, owner: str, ttl_seconds: int, *, now: float | None = None
    ) -> LockResult:
        """Take the model's lock for `owner` unless someone else holds an unexpired one.

        Re-acquiring by the same owner succeeds (a retried state is idempotent).
        """
        now_s = int(now if now is not None else time.time())
        expires = now_s + ttl_seconds
        try:
            self.client.put_item(
                TableName=self.table,
                Item={
                    "pk": _pk(model),
                    "sk": {"S": "LOCK"},
                    "owner": {"S": owner},
                    "lock_expires_at": {"N": str(expires)},
                    "acquired_at": {"N": str(now_s)},
                },
                ConditionExpression="attribute_not_exists(pk) OR #o = :owner OR lock_expires_at < :now",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={":owner": {"S": owner}, ":now": {"N": str(now_s)}},
            )
            return LockResult(True, owner, expires)
        except Exception as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
        held = self._get(model, "LOCK")
        if held is None:  # released between our write and read: try once more
            return self.acquire_lock(model, owner, ttl_seconds, now=now)
        return LockResult(False, held["owner"]["S"], int(held["lock_expires_at"]["N"]))

    def release_lock(self, model: str, owner: str) -> bool:
        """Release if `owner` holds it; False when it was not held by `owner` (already released)."""
        try:
            self.client.delete_item(
                TableName=self.table,
                Key={"pk": _pk(model), "sk": {"S": "LOCK"}},
                ConditionExpression="#o = :owner",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={":owner": {"S": owner}},
            )
            return True
        except Exception as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise

    def lock_holder(self, model: str) -> tuple[str, int] | None:
        held = self._get(model, "LOCK")
        return None if held is None else (held["owner"]["S"], int(held["lock_expires_at"]["N"]))

    # --- pending (coalesced) request ---------------------------------------------------------
    def coalesce(self, model: str, holder: str, request: dict[str, Any], *, now: float | None = None) -> bool:
        """Store `request` as the model's PENDING request only while `holder` still holds an
        unexpired lock: one transaction (a ConditionCheck on the lock and the Put), so a holder
        that releases and then pops PENDING always sees it. False (nothing written) when the lock
        was released, taken over or expired meanwhile: the caller tries for the lock again."""
        now_s = int(now if now is not None else time.time())
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "ConditionCheck": {
                            "TableName": self.table,
                            "Key": {"pk": _pk(model), "sk": {"S": "LOCK"}},
                            "ConditionExpression": "#o = :holder AND lock_expires_at >= :now",
                            "ExpressionAttributeNames": {"#o": "owner"},
                            "ExpressionAttributeValues": {
                                ":holder": {"S": holder},
                                ":now": {"N": str(now_s)},
                            },
                        }
                    },
                    {
                        "Put": {
                            "TableName": self.table,
                            "Item": _doc_item(model, "PENDING", request),
                        }
                    },
                ]
            )
            return True
        except Exception as exc:
            if error_code(exc) != "TransactionCanceledException":
                raise
            reasons = getattr(exc, "response", {}).get("CancellationReasons", [])
            if reasons and reasons[0].get("Code") != "ConditionalCheckFailed":
                raise  # the Put itself failed (a conflicting transaction): the state's Retry
            return False

    def pop_pending(self, model: str) -> dict[str, Any] | None:
        response = self.client.delete_item(
            TableName=self.table, Key={"pk": _pk(model), "sk": {"S": "PENDING"}}, ReturnValues="ALL_OLD"
        )
        item = response.get("Attributes")
        return None if item is None else _doc(item)

    # --- the active rollout ------------------------------------------------------------------
    def update_rollout(self, model: str, run_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Atomically set top-level fields of the ROLLOUT item owned by `run_id`; returns the new item.

        Fields live as separate attributes (JSON strings) so that on_alarm and the bake/watch
        registration can each update their own field without overwriting the other's.
        """
        sets, names, values = _field_updates(run_id, fields)
        updated = self._update_rollout(
            model,
            UpdateExpression=f"SET run_id = :run, {sets}",
            ConditionExpression="attribute_not_exists(run_id) OR run_id = :run",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )
        assert updated is not None  # the condition holds unless another run owns it (an error)
        return updated

    def get_rollout(self, model: str) -> dict[str, Any] | None:
        item = self._get(model, "ROLLOUT")
        return None if item is None else decode_rollout(item)

    def clear_rollout(self, model: str, run_id: str) -> None:
        try:
            self.client.delete_item(
                TableName=self.table,
                Key={"pk": _pk(model), "sk": {"S": "ROLLOUT"}},
                ConditionExpression="run_id = :run",
                ExpressionAttributeValues={":run": {"S": run_id}},
            )
        except Exception as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise

    def mark_rollout(self, model: str, run_id: str, fields: dict[str, Any]) -> dict[str, Any] | None:
        sets, names, values = _field_updates(run_id, fields)
        return self._update_rollout(
            model,
            UpdateExpression=f"SET {sets}",
            ConditionExpression="run_id = :run",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            absent_is_none=True,
        )

    def record_alarm_on_rollout(self, model: str, alarm: dict[str, Any]) -> dict[str, Any] | None:
        """Append an alarm to the active rollout (if any) and return the rollout as updated."""
        return self._update_rollout(
            model,
            UpdateExpression="SET alarms = list_append(if_not_exists(alarms, :empty), :a)",
            ConditionExpression="attribute_exists(run_id)",
            ExpressionAttributeValues={":a": {"L": [{"S": json.dumps(alarm)}]}, ":empty": {"L": []}},
            absent_is_none=True,
        )

    def _update_rollout(
        self, model: str, *, absent_is_none: bool = False, **update: Any
    ) -> dict[str, Any] | None:
        """UpdateItem on the ROLLOUT item; the item as updated, or None when its condition failed
        and `absent_is_none` (otherwise that failure is raised)."""
        try:
            response = self.client.update_item(
                TableName=self.table,
                Key={"pk": _pk(model), "sk": {"S": "ROLLOUT"}},
                ReturnValues="ALL_NEW",
                **update,
            )
        except Exception as exc:
            if absent_is_none and error_code(exc) == "ConditionalCheckFailedException":
                return None
            raise
        return decode_rollout(response["Attributes"])


def _field_updates(run_id: str, fields: dict[str, Any]) -> tuple[str, dict[str, str], dict[str, Any]]:
    """`#f0 = :v0, ...` with its names and values (each field a JSON string), and `:run`."""
    names = {f"#f{i}": key for i, key in enumerate(fields)}
    values: dict[str, Any] = {
        f":v{i}": {"S": json.dumps(value, default=_json_default)} for i, value in enumerate(fields.values())
    }
    values[":run"] = {"S": run_id}
    return ", ".join(f"#f{i} = :v{i}" for i in range(len(fields))), names, values


def decode_rollout(item: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in item.items():
        if key in {"pk", "sk"}:
            continue
        if key == "run_id":
            out[key] = value["S"]
        elif key == "alarms":
            out[key] = [json.loads(v["S"]) for v in value["L"]]
        elif "S" in value:
            out[key] = json.loads(value["S"])
        elif "N" in value:
            out[key] = Decimal(value["N"])
    return out


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
