#!/bin/sh
# azd postdeploy hook (POSIX shell; infra/hooks/postdeploy.ps1 is the Windows twin).
#
# Creates, or updates, the Event Grid subscription that delivers inbound SMS
# (Microsoft.Communication.SMSReceived) to POST /api/inbound. It cannot live in Bicep: Event Grid
# validates a webhook when the subscription is created, and only the deployed code answers that
# handshake. Safe to run again (the subscription is created or updated in place); run it by hand
# with `azd hooks run postdeploy`.
#
# Reads the azd environment (Bicep outputs): AZURE_RESOURCE_GROUP, AZURE_FUNCTION_APP_NAME,
# SERVICE_API_URI, AZURE_STORAGE_ACCOUNT_ID, EVENT_GRID_SYSTEM_TOPIC_ID, EVENT_GRID_IDENTITY_ID,
# EVENT_GRID_DEADLETTER_CONTAINER.
#
# The subscription is written with `az rest` (the ARM API, as Bicep would) rather than
# `az eventgrid system-topic event-subscription create`, because that CLI command cannot
# dead-letter with a managed identity, and the storage account accepts no other kind of access.
set -eu

need() {
    eval "value=\${$1:-}"
    if [ -z "$value" ]; then
        echo "postdeploy: $1 is not set; run this through azd (azd up, azd deploy or azd hooks run postdeploy)." >&2
        exit 1
    fi
}
for name in AZURE_RESOURCE_GROUP AZURE_FUNCTION_APP_NAME SERVICE_API_URI AZURE_STORAGE_ACCOUNT_ID \
    EVENT_GRID_SYSTEM_TOPIC_ID EVENT_GRID_IDENTITY_ID EVENT_GRID_DEADLETTER_CONTAINER; do
    need "$name"
done

rg=$AZURE_RESOURCE_GROUP
app=$AZURE_FUNCTION_APP_NAME
subscription=${SMS_RECEIVED_SUBSCRIPTION_NAME:-sms-received}
url="$EVENT_GRID_SYSTEM_TOPIC_ID/eventSubscriptions/$subscription?api-version=2025-02-15"
function_name=inbound_webhook
key_name=eventgrid
# Retry policy and dead-letter, the same as the delivery-report subscription in eventgrid.bicep.
max_delivery_attempts=30
event_ttl_minutes=1440

# 1. Wake the app and wait until the host lists the inbound function (a fresh Flex Consumption
#    deployment can take a minute or two to start and index its functions).
echo "postdeploy: waiting for $function_name on $app ..."
tries=0
until az functionapp function show -g "$rg" -n "$app" --function-name "$function_name" \
    --query name -o tsv >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -ge 30 ]; then
        echo "postdeploy: $function_name did not appear on $app after 5 minutes; check the deployment, then run 'azd hooks run postdeploy'." >&2
        exit 1
    fi
    curl -s -o /dev/null --max-time 20 "$SERVICE_API_URI/api/health" || true
    sleep 10
done

# 2. A function key of its own for Event Grid ("eventgrid" on inbound_webhook only), so it can
#    be rotated without touching the keys your apps use: delete it and run this hook again.
key=$(az functionapp function keys list -g "$rg" -n "$app" --function-name "$function_name" \
    --query "$key_name" -o tsv 2>/dev/null || true)
if [ -z "$key" ]; then
    key=$(az functionapp function keys set -g "$rg" -n "$app" --function-name "$function_name" \
        --key-name "$key_name" --query value -o tsv)
fi
if [ -z "$key" ]; then
    echo "postdeploy: could not read or create the '$key_name' function key of $function_name." >&2
    exit 1
fi

# 3. The subscription: Event Grid schema, 30 attempts within 24 hours, then dead-lettered into
#    the eventgrid-deadletter container with the Event Grid identity, as in eventgrid.bicep.
#    Event Grid keeps the endpoint's query string (the key) write-only. The request body holds
#    the key, so it lives in a private temporary file, never on a command line.
body=$(umask 077 && mktemp)
trap 'rm -f "$body"' EXIT
trap 'exit 130' INT TERM
cat >"$body" <<JSON
{
  "properties": {
    "destination": {
      "endpointType": "WebHook",
      "properties": {"endpointUrl": "$SERVICE_API_URI/api/inbound?code=$key"}
    },
    "filter": {"includedEventTypes": ["Microsoft.Communication.SMSReceived"]},
    "eventDeliverySchema": "EventGridSchema",
    "retryPolicy": {"maxDeliveryAttempts": $max_delivery_attempts, "eventTimeToLiveInMinutes": $event_ttl_minutes},
    "deadLetterWithResourceIdentity": {
      "identity": {"type": "UserAssigned", "userAssignedIdentity": "$EVENT_GRID_IDENTITY_ID"},
      "deadLetterDestination": {
        "endpointType": "StorageBlob",
        "properties": {"resourceId": "$AZURE_STORAGE_ACCOUNT_ID", "blobContainerName": "$EVENT_GRID_DEADLETTER_CONTAINER"}
      }
    }
  }
}
JSON

echo "postdeploy: subscribing $SERVICE_API_URI/api/inbound to Microsoft.Communication.SMSReceived ..."
attempt=0
while :; do
    attempt=$((attempt + 1))
    # The PUT returns at once; Event Grid then validates the endpoint (the handshake).
    if az rest --method put --url "$url" --body "@$body" --output none; then
        state=Creating
    else
        state=Rejected
    fi
    polls=0
    while [ "$state" = Creating ] || [ "$state" = Updating ] || [ "$state" = AwaitingManualAction ]; do
        polls=$((polls + 1))
        if [ "$polls" -gt 36 ]; then
            break
        fi
        sleep 5
        state=$(az rest --method get --url "$url" --query properties.provisioningState -o tsv) \
            || state=Unknown
    done
    if [ "$state" = Succeeded ]; then
        break
    fi
    if [ "$attempt" -ge 3 ]; then
        echo "postdeploy: Event Grid could not validate $SERVICE_API_URI/api/inbound (state: $state); see docs/deploy.md (Troubleshooting)." >&2
        exit 1
    fi
    # The validation handshake can time out while a cold instance starts: warm up, try again.
    curl -s -o /dev/null --max-time 60 "$SERVICE_API_URI/api/health" || true
done
echo "postdeploy: inbound SMS now reach $SERVICE_API_URI/api/inbound (subscription '$subscription')."
