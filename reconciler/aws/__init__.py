"""The one seam to AWS: the only package that imports boto3 or botocore. Nothing else in the
program ever sees a botocore type: every botocore exception becomes an `errors.*` (chained
with `from`) through one table, with a message naming the layer or object, the region and
what to do about it.

Its rooms, each a module:
- `session`: the botocore session (standard chain, short service loader), client
  configurations and timeouts, the clients of a run, rate-limited per region;
- `failures`: the table from botocore's failures to reconcile's errors, the words a call is
  named in, what a failed publish means (refused, never sent, outcome unknown);
- `answers`: every field read from an AWS answer, checked (never a KeyError);
- `layers`: Boto3LayerStore, the Lambda port (and the artifact port's S3 calls);
- `objects`: S3 objects, HeadObject of layer code and Boto3ObjectStore for the S3 state;
- `transfer`: bytes on the move (a publish's zip streamed from disk, S3 uploads, downloads
  of a version's zip);
- `functions`: Boto3FunctionStore, the functions that consume a layer (read, found by tags,
  updated once, waited on);
- `parameters`: Boto3ParameterStore, SSM's String parameters (writes paced and resent only
  when throttled).
Callers use the names re-exported here (`aws.Boto3LayerStore`, `aws.DEFAULT_TIMEOUT`); the
consumer stores share the layer store's clients (`aws.Boto3FunctionStore(store.clients)`).
"""

from __future__ import annotations

from reconciler import errors
from reconciler.aws import (
    answers,
    failures,
    functions,
    layers,
    objects,
    parameters,
    session,
    transfer,
)
from reconciler.aws.failures import publish_error, translate
from reconciler.aws.functions import Boto3FunctionStore
from reconciler.aws.layers import PAGE_SIZE, Boto3LayerStore
from reconciler.aws.objects import Boto3ObjectStore
from reconciler.aws.parameters import Boto3ParameterStore
from reconciler.aws.session import DEFAULT_TIMEOUT, publish_read_timeout
from reconciler.aws.transfer import CONTENT_SHA256_METADATA

# Lambda's and AWS's codes for "slow down": the request was refused, nothing was done.
THROTTLING_CODES = errors.THROTTLING_CODES

__all__ = [
    "CONTENT_SHA256_METADATA", "DEFAULT_TIMEOUT", "PAGE_SIZE", "THROTTLING_CODES",
    "Boto3FunctionStore", "Boto3LayerStore", "Boto3ObjectStore", "Boto3ParameterStore",
    "answers", "failures", "functions", "layers", "objects", "parameters",
    "publish_error", "publish_read_timeout", "session", "transfer", "translate",
]
