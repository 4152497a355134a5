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

@description('Application (client) id of the console\'s Entra ID app registration. Empty: no App Service authentication (the console still needs a function key for every API call).')
param consoleAuthClientId string = ''

@description('Resource id of the console sign-in identity (rbac.bicep). Empty when consoleAuthClientId is.')
param consoleAuthIdentityId string = ''

@description('Client id of the console sign-in identity. Empty when consoleAuthClientId is.')
param consoleAuthIdentityClientId string = ''

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

// Console sign-in (App Service authentication, "Easy Auth"), only when consoleAuthClientId is set.
// - Supported on Flex Consumption: the plan's preview listed "EasyAuth isn't currently supported";
//   the GA list of considerations no longer does (learn.microsoft.com/azure/azure-functions/
//   flex-consumption-plan#considerations).
// - It does not replace function keys: the Functions host checks x-functions-key / ?code= for
//   every authLevel function route whatever Easy Auth decided; a signed-in user adds an identity to
//   the request but no auth level (Azure/azure-functions-host AuthenticationLevelHandler.cs,
//   AuthUtility.PrincipalHasAuthLevelClaim; open feature request Azure/azure-functions-host#11394).
//   So the console still sends the function key, and keyed callers need no Entra token as long as
//   their routes are excluded below.
// - No secret: the client credential is a federated identity credential of the console sign-in
//   identity (clientSecretSettingName = OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID, whose value is that
//   identity's client id), learn.microsoft.com/azure/app-service/configure-authentication-provider-aad.
var consoleAuthEnabled = !empty(consoleAuthClientId)
var consoleAuthSecretSettingName = 'OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID'
var consoleAuthSettings = empty(consoleAuthClientId) ? {} : {
  OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID: consoleAuthIdentityClientId
}
// Every path but the console's: each route prefix of function_app.py and everything under it
// ('/path/*' is the documented wildcard form, learn.microsoft.com/azure/app-service/
// configure-authentication-file-based), plus the host's own key-protected endpoints (/admin,
// /runtime/webhooks). A route missing here fails closed (its callers get the sign-in redirect);
// tests/unit/test_infra.py checks this list against every HTTP route of function_app.py.
var consoleAuthExcludedPaths = [
  '/api/analytics'
  '/api/analytics/*'
  '/api/audiences'
  '/api/audiences/*'
  '/api/campaigns'
  '/api/campaigns/*'
  '/api/conversations'
  '/api/conversations/*'
  '/api/health'
  '/api/health/*'
  '/api/inbound'
  '/api/inbound/*'
  '/api/messages'
  '/api/messages/*'
  '/api/optouts'
  '/api/optouts/*'
  '/api/segments'
  '/api/segments/*'
  '/api/templates'
  '/api/templates/*'
  '/admin/*'
  '/runtime/webhooks/*'
]
// Microsoft Entra ID sign-in in front of /api/console only. Reference:
// learn.microsoft.com/azure/templates/microsoft.web/sites/config-authsettingsv2.
var consoleAuthOn = {
  platform: {
    enabled: true
  }
  globalValidation: {
    // A browser that opens /api/console unauthenticated is sent to the Entra ID sign-in.
    requireAuthentication: true
    unauthenticatedClientAction: 'RedirectToLoginPage'
    redirectToProvider: 'azureactivedirectory'
    // Event Grid (/api/inbound), the health check and the apps calling the API with function
    // keys carry no Entra ID token: their paths skip the sign-in, the host's key check stays.
    excludedPaths: consoleAuthExcludedPaths
  }
  httpSettings: {
    requireHttps: true
  }
  identityProviders: {
    azureActiveDirectory: {
      enabled: true
      registration: {
        // Single-tenant registration in the deployment's tenant.
        openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
        clientId: consoleAuthClientId
        clientSecretSettingName: consoleAuthSecretSettingName
      }
    }
  }
  login: {
    // The console never reads the user's Entra ID tokens (its API calls carry the function
    // key), so there is nothing to store; a blob token store would need a SAS URL setting,
    // that is a secret. The sign-in session is the AppServiceAuthSession cookie.
    tokenStore: {
      enabled: false
    }
  }
}
// With no client id the template still writes authsettingsV2, turned off: a sign-in set up earlier
// (or by hand) goes away on the next provision, as the app settings do.
var consoleAuthOff = {
  platform: {
    enabled: false
  }
}
var siteIdentities = consoleAuthEnabled ? {
  '${identityId}': {}
  '${consoleAuthIdentityId}': {}
} : {
  '${identityId}': {}
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
    // The app identity, plus the console sign-in identity when that is on.
    userAssignedIdentities: siteIdentities
  }
  properties: {
    //checkov:skip=CKV_AZURE_222:Public network access is the point: Event Grid delivers inbound SMS to /api/inbound and the business's apps call /api over the internet; every route but /api/health and the static console page needs a function key, HTTPS only.
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
    properties: union(storageSettings, telemetrySettings, appSettings, webhookSecretSettings, consoleAuthSettings)
  }

  // Always written (on or off), nested like appsettings: a conditional resource would leave an
  // earlier authsettingsV2 in place once the client id is unset, and Checkov reads a top-level
  // sites/config resource as a whole web app.
  resource authSettings 'config' = {
    name: 'authsettingsV2'
    properties: consoleAuthEnabled ? consoleAuthOn : consoleAuthOff
    dependsOn: [
      settings
    ]
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
