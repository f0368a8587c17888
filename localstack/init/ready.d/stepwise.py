"""Create stepwise's AWS resources on LocalStack, as template.yaml does.

LocalStack runs this file once it is ready (it is mounted into
/etc/localstack/init/ready.d). It can also be run by hand against any
endpoint: AWS_ENDPOINT_URL=http://localhost:4566 python3 stepwise.py.
Names follow the SAM stack name STEPWISE_STACK (default "stepwise"): the
table <stack>, the bucket <stack>-blobs, the queues <stack>-work and
<stack>-work-dlq, the bus <stack> and its rule to the work queue, and the
secret <stack>/secret-key holding a random key that encrypts provider keys
(the secret template.yaml's SecretKeySecretId names by default). Running
it again changes nothing: in particular the key is made once and kept, as
rotating it would make the provider keys already stored unreadable.
"""

import base64
import json
import os
import secrets

import boto3

STACK = os.environ.get("STEPWISE_STACK", "stepwise")
ENDPOINT = os.environ.get("AWS_ENDPOINT_URL", "http://localhost:4566")
SESSION = boto3.session.Session(
    region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
    aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
)


def client(service):
    return SESSION.client(service, endpoint_url=ENDPOINT)


def create_table(dynamodb):
    """The one table, exactly as infra/awsdynamo's CreateTable makes it."""
    def key(hash_key, range_key):
        return [{"AttributeName": hash_key, "KeyType": "HASH"},
                {"AttributeName": range_key, "KeyType": "RANGE"}]

    try:
        dynamodb.create_table(
            TableName=STACK,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": name, "AttributeType": "S"}
                                  for name in ("PK", "SK", "GSI1PK", "GSI1SK")],
            KeySchema=key("PK", "SK"),
            GlobalSecondaryIndexes=[{"IndexName": "GSI1",
                                     "KeySchema": key("GSI1PK", "GSI1SK"),
                                     "Projection": {"ProjectionType": "ALL"}}],
        )
    except dynamodb.exceptions.ResourceInUseException:
        pass  # created by an earlier run
    dynamodb.get_waiter("table_exists").wait(TableName=STACK)
    # Budget counters name their window; expiresAt drops old ones.
    ttl = dynamodb.describe_time_to_live(TableName=STACK)["TimeToLiveDescription"]
    if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
        dynamodb.update_time_to_live(TableName=STACK, TimeToLiveSpecification={
            "AttributeName": "expiresAt", "Enabled": True})


def create_queue(sqs, name, attributes):
    """Creates the queue by name alone (which never conflicts with an
    existing one), then sets its attributes; returns its URL and ARN."""
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def create_bucket(s3):
    """The bucket of step outputs too large for a table item (STEPWISE_BUCKET)."""
    try:
        s3.create_bucket(Bucket=f"{STACK}-blobs")
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass


def create_secret_key(secretsmanager):
    """The secret whose SecretString is the 32-byte key, base64, that the
    functions read at cold start (STEPWISE_SECRET_KEY_ARN); returns its ARN."""
    name = f"{STACK}/secret-key"
    try:
        return secretsmanager.describe_secret(SecretId=name)["ARN"]
    except secretsmanager.exceptions.ResourceNotFoundException:
        pass
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    return secretsmanager.create_secret(Name=name, SecretString=key)["ARN"]


def main():
    create_table(client("dynamodb"))
    create_bucket(client("s3"))

    sqs = client("sqs")
    # 14 days, the maximum, so that given-up messages can be inspected.
    dlq_url, dlq_arn = create_queue(sqs, f"{STACK}-work-dlq", {"MessageRetentionPeriod": "1209600"})
    # 6x the worker's 300 s timeout; maxReceiveCount 5 as in template.yaml.
    work_url, work_arn = create_queue(sqs, f"{STACK}-work", {
        "VisibilityTimeout": "1800",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}),
    })

    events = client("events")
    try:
        events.create_event_bus(Name=STACK)
    except events.exceptions.ResourceAlreadyExistsException:
        pass
    # put_rule and put_targets replace what exists under the same names.
    # Every event on the bus goes to the work queue, where the worker runs
    # its triggers: ingested, sent by functions, execution lifecycle.
    rule_arn = events.put_rule(
        Name=f"{STACK}-events-to-work",
        EventBusName=STACK,
        Description="Delivers every stepwise event to the work queue, for its triggers.",
        EventPattern=json.dumps({"source": [{"prefix": ""}]}),
        State="ENABLED",
    )["RuleArn"]
    events.put_targets(Rule=f"{STACK}-events-to-work", EventBusName=STACK, Targets=[{
        "Id": "WorkQueue",
        "Arn": work_arn,
        "DeadLetterConfig": {"Arn": dlq_arn},
        "RetryPolicy": {"MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": 86400},
    }])

    # Only the rule may send to the queues through EventBridge.
    policy = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "EventsToWorkQueue",
        "Effect": "Allow",
        "Principal": {"Service": "events.amazonaws.com"},
        "Action": "sqs:SendMessage",
        "Resource": [work_arn, dlq_arn],
        "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
    }]})
    for url in (work_url, dlq_url):
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": policy})

    secret_arn = create_secret_key(client("secretsmanager"))

    print(f"stepwise: STEPWISE_TABLE={STACK} STEPWISE_QUEUE_URL={work_url} STEPWISE_BUCKET={STACK}-blobs "
          f"STEPWISE_EVENT_BUS={STACK} STEPWISE_SECRET_KEY_ARN={secret_arn}")


if __name__ == "__main__":
    main()
