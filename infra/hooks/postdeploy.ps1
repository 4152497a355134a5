# azd postdeploy hook (PowerShell; infra/hooks/postdeploy.sh is the POSIX twin).
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
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

foreach ($name in 'AZURE_RESOURCE_GROUP', 'AZURE_FUNCTION_APP_NAME', 'SERVICE_API_URI',
    'AZURE_STORAGE_ACCOUNT_ID', 'EVENT_GRID_SYSTEM_TOPIC_ID', 'EVENT_GRID_IDENTITY_ID',
    'EVENT_GRID_DEADLETTER_CONTAINER') {
    if (-not [Environment]::GetEnvironmentVariable($name)) {
        Write-Error "postdeploy: $name is not set; run this through azd (azd up, azd deploy or azd hooks run postdeploy)."
    }
}

$rg = $env:AZURE_RESOURCE_GROUP
$app = $env:AZURE_FUNCTION_APP_NAME
$apiUri = $env:SERVICE_API_URI
$subscription = if ($env:SMS_RECEIVED_SUBSCRIPTION_NAME) { $env:SMS_RECEIVED_SUBSCRIPTION_NAME } else { 'sms-received' }
$url = "$($env:EVENT_GRID_SYSTEM_TOPIC_ID)/eventSubscriptions/$($subscription)?api-version=2025-02-15"
$functionName = 'inbound_webhook'
$keyName = 'eventgrid'
# Retry policy and dead-letter, the same as the delivery-report subscription in eventgrid.bicep.
$maxDeliveryAttempts = 30
$eventTtlMinutes = 1440

function Invoke-Warmup([int]$TimeoutSec) {
    try { Invoke-WebRequest -Uri "$apiUri/api/health" -TimeoutSec $TimeoutSec -UseBasicParsing | Out-Null } catch { }
}

# 1. Wake the app and wait until the host lists the inbound function.
Write-Host "postdeploy: waiting for $functionName on $app ..."
$tries = 0
while ($true) {
    az functionapp function show -g $rg -n $app --function-name $functionName --query name -o tsv 2>$null | Out-Null
    if ($LASTEXITCODE -eq 0) { break }
    $tries++
    if ($tries -ge 30) {
        Write-Error "postdeploy: $functionName did not appear on $app after 5 minutes; check the deployment, then run 'azd hooks run postdeploy'."
    }
    Invoke-Warmup 20
    Start-Sleep -Seconds 10
}

# 2. A function key of its own for Event Grid ("eventgrid" on inbound_webhook only).
$key = az functionapp function keys list -g $rg -n $app --function-name $functionName --query $keyName -o tsv 2>$null
if (-not $key) {
    $key = az functionapp function keys set -g $rg -n $app --function-name $functionName --key-name $keyName --query value -o tsv
}
if (-not $key) {
    Write-Error "postdeploy: could not read or create the '$keyName' function key of $functionName."
}

# 3. The subscription: Event Grid schema, 30 attempts within 24 hours, then dead-lettered into
#    the eventgrid-deadletter container with the Event Grid identity, as in eventgrid.bicep.
#    The request body holds the key, so it goes through a temporary file, not the command line.
$properties = [ordered]@{
    destination = @{
        endpointType = 'WebHook'
        properties = @{ endpointUrl = "$apiUri/api/inbound?code=$key" }
    }
    filter = @{ includedEventTypes = @('Microsoft.Communication.SMSReceived') }
    eventDeliverySchema = 'EventGridSchema'
    retryPolicy = @{ maxDeliveryAttempts = $maxDeliveryAttempts; eventTimeToLiveInMinutes = $eventTtlMinutes }
    deadLetterWithResourceIdentity = @{
        identity = @{ type = 'UserAssigned'; userAssignedIdentity = $env:EVENT_GRID_IDENTITY_ID }
        deadLetterDestination = @{
            endpointType = 'StorageBlob'
            properties = @{
                resourceId = $env:AZURE_STORAGE_ACCOUNT_ID
                blobContainerName = $env:EVENT_GRID_DEADLETTER_CONTAINER
            }
        }
    }
}
$body = New-TemporaryFile
try {
    @{ properties = $properties } | ConvertTo-Json -Depth 10 | Set-Content -Path $body -Encoding utf8NoBOM

    Write-Host "postdeploy: subscribing $apiUri/api/inbound to Microsoft.Communication.SMSReceived ..."
    $attempt = 0
    while ($true) {
        $attempt++
        # The PUT returns at once; Event Grid then validates the endpoint (the handshake).
        az rest --method put --url $url --body "@$body" --output none
        $state = if ($LASTEXITCODE -eq 0) { 'Creating' } else { 'Rejected' }
        $polls = 0
        while ($state -in 'Creating', 'Updating', 'AwaitingManualAction') {
            $polls++
            if ($polls -gt 36) { break }
            Start-Sleep -Seconds 5
            $state = az rest --method get --url $url --query properties.provisioningState -o tsv
            if ($LASTEXITCODE -ne 0) { $state = 'Unknown' }
        }
        if ($state -eq 'Succeeded') { break }
        if ($attempt -ge 3) {
            Write-Error "postdeploy: Event Grid could not validate $apiUri/api/inbound (state: $state); see docs/deploy.md (Troubleshooting)."
        }
        # The validation handshake can time out while a cold instance starts: warm up, try again.
        Invoke-Warmup 60
    }
}
finally {
    Remove-Item -Path $body -Force -ErrorAction SilentlyContinue
}
Write-Host "postdeploy: inbound SMS now reach $apiUri/api/inbound (subscription '$subscription')."
