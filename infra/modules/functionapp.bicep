// The function app on Flex Consumption (FC1, Linux, Python): one user-assigned identity for
// storage, App Insights and ACS; no key, connection string or secret in any app setting.
param name string
param planName string
param location string
param tags object
param storageAccountName string
param deploymentContainerName string
param identityId string
param identityClientId string
param applicationInsightsName string
param acsEndpoint string
param pythonVersion string
param instanceMemoryMB int
param maximumInstanceCount int
param smsDefaultFrom string
param smsSenderRatePerMinute int
param smsOptoutScope string
param smsAppWebhookUrl string

@description('Key Vault secret URI of SMS_APP_WEBHOOK_SECRET (a reference, not the secret). Empty: no secret.')
param smsAppWebhookSecretUri string

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  //checkov:skip=CKV_AZURE_225:Zone redundancy on Flex Consumption needs at least two always-ready instances per function group (billed at rest) and is not offered in every region; enable zoneRedundant for production where it is.
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

// Identity-based storage for the Functions host (blob + queue: triggers, timers, leases) and the
// app (sms_core reads __tableServiceUri + __queueServiceUri). credential=managedidentity with
// clientId makes both use this user-assigned identity.
var storageSettings = {
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
  AzureWebJobsStorage__queueServiceUri: storage.properties.primaryEndpoints.queue
  AzureWebJobsStorage__tableServiceUri: storage.properties.primaryEndpoints.table
}

// The connection string names the App Insights resource and its ingestion endpoint; it is not a
// credential here: with DisableLocalAuth the resource accepts telemetry only with an Entra ID
// token, which the host gets for the identity named in the authentication string.
var telemetrySettings = {
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD;ClientId=${identityClientId}'
}

// ACS with Entra ID: DefaultAzureCredential picks the user-assigned identity named by
// AZURE_CLIENT_ID.
var appSettings = {
  AZURE_CLIENT_ID: identityClientId
  ACS_ENDPOINT: acsEndpoint
  SMS_DEFAULT_FROM: smsDefaultFrom
  SMS_SENDER_RATE_PER_MINUTE: string(smsSenderRatePerMinute)
  SMS_OPTOUT_SCOPE: smsOptoutScope
  SMS_APP_WEBHOOK_URL: smsAppWebhookUrl
  // One JSON object per log line: Application Insights keeps it as the trace's message, and
  // parse_json(message) reads correlationId and the other fields (docs/deploy.md).
  SMS_LOG_FORMAT: 'json'
}

// The webhook signing secret never passes through the template: only a Key Vault reference,
// resolved by the platform with the app identity (keyVaultReferenceIdentity below).
var webhookSecretSettings = empty(smsAppWebhookSecretUri) ? {} : {
  SMS_APP_WEBHOOK_SECRET: '@Microsoft.KeyVault(SecretUri=${smsAppWebhookSecretUri})'
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  // azd finds the deploy target of service `api` by this tag.
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    //checkov:skip=CKV_AZURE_222:Public network access is the point: Event Grid delivers inbound SMS to /api/inbound and the business's apps call /api over the internet; every route but /api/health needs a function key, HTTPS only.
    //checkov:skip=CKV_AZURE_17:Incoming client certificates would break Event Grid's webhook delivery to /api/inbound (Event Grid sends none); callers authenticate with function keys.
    //checkov:skip=CKV_AZURE_212:Flex Consumption scales to zero and adds instances per demand (up to maximumInstanceCount); keeping failover instances always ready would bill around the clock.
    serverFarmId: plan.id
    keyVaultReferenceIdentity: identityId
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      healthCheckPath: '/api/health'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
    }
  }

  resource settings 'config' = {
    name: 'appsettings'
    properties: union(storageSettings, telemetrySettings, appSettings, webhookSecretSettings)
  }

  // No publishing with basic (user/password) credentials: azd deploys with Entra ID.
  resource ftpCredentials 'basicPublishingCredentialsPolicies' = {
    name: 'ftp'
    properties: {
      allow: false
    }
  }

  resource scmCredentials 'basicPublishingCredentialsPolicies' = {
    name: 'scm'
    properties: {
      allow: false
    }
  }
}

output name string = site.name
output id string = site.id
output uri string = 'https://${site.properties.defaultHostName}'
