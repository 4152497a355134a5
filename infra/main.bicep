// SMS Functions bundle: everything `azd up` creates, identity-only (no key or connection string
// in any app setting). Operator guide: docs/deploy.md.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name; names the resource group and seeds the resource token.')
param environmentName string

@minLength(1)
@description('Region of the resource group and every regional resource (must offer Flex Consumption).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Object id of the person running azd (AZURE_PRINCIPAL_ID). Gets data access to the queues, tables and dead-letter blobs for operations (peek a poison queue, read a dead-lettered event). Empty: no grant.')
param principalId string = ''

@description('Principal type of principalId.')
@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
param principalType string = 'User'

@description('Where Azure Communication Services stores data at rest. Fixed at creation.')
@allowed([
  'Africa'
  'Asia Pacific'
  'Australia'
  'Brazil'
  'Canada'
  'Europe'
  'France'
  'Germany'
  'India'
  'Japan'
  'Korea'
  'Norway'
  'Switzerland'
  'UAE'
  'UK'
  'United States'
])
param acsDataLocation string = 'United States'

@description('Turn off the ACS access keys entirely (Entra ID only). The app never uses them; see docs/deploy.md before turning this on.')
param acsDisableLocalAuth bool = false

@description('Built-in role that lets the app identity send SMS through ACS with Entra ID. Default: Communication and Email Service Owner. Alternative documented by the ACS quickstart: Contributor (b24988ac-6180-42a0-ab88-20f7382dd24c).')
param acsSenderRoleDefinitionId string = '09976791-48a7-449e-bb21-39d1a415f350'

@description('SMS_DEFAULT_FROM: the sender (E.164 number bought in ACS) used when a request names none. Empty until a number is wired.')
param smsDefaultFrom string = ''

@description('SMS_SENDER_RATE_PER_MINUTE: pacing per sender number (ACS toll-free: 200).')
@minValue(1)
param smsSenderRatePerMinute int = 200

@description('SMS_OPTOUT_SCOPE: sender (per sender/recipient pair, as ACS) or global.')
@allowed([
  'sender'
  'global'
])
param smsOptoutScope string = 'sender'

@description('SMS_APP_WEBHOOK_URL: optional URL that receives app events.')
param smsAppWebhookUrl string = ''

@description('Key Vault secret URI (https://<vault>.vault.azure.net/secrets/<name>) holding SMS_APP_WEBHOOK_SECRET. The app setting becomes a Key Vault reference; the secret itself never passes through azd or Bicep. Empty: no secret.')
param smsAppWebhookSecretUri string = ''

@description('Application (client) id of the Entra ID app registration that signs people in to the web console (GET /api/console), AZURE_CONSOLE_AUTH_CLIENT_ID. Set: App Service authentication asks for an Entra ID sign-in on the console only, with no client secret (docs/deploy.md, "Protecting the console"). Empty: no sign-in; the public console page does nothing without a function key.')
param consoleAuthClientId string = ''

@description('Python version of the Flex Consumption runtime.')
@allowed([
  '3.10'
  '3.11'
  '3.12'
])
param pythonVersion string = '3.11'

@description('Flex Consumption instance memory (MB).')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Flex Consumption scale-out limit (40 is the lowest the plan accepts).')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('E-mail address that receives the alerts. Empty: alerts fire in Azure Monitor only.')
param alertEmail string = ''

@description('Alert when the oldest delivery report waited longer than this (minutes) before it was processed.')
@minValue(1)
param deliveryReportLagMinutes int = 15

@description('Alert when the storage account holds more queue messages than this (all queues of the account; the metric has no per-queue dimension).')
@minValue(1)
param queueBacklogThreshold int = 5000

var abbrs = loadJsonContent('abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var functionAppName = '${abbrs.webSitesFunctions}api-${resourceToken}'
var deploymentContainerName = 'app-package-${take(resourceToken, 7)}'
var deadLetterContainerName = 'eventgrid-deadletter'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    deadLetterContainerName: deadLetterContainerName
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
  }
}

module communication 'modules/communication.bicep' = {
  name: 'communication'
  scope: rg
  params: {
    name: '${abbrs.communicationServices}${resourceToken}'
    dataLocation: acsDataLocation
    disableLocalAuth: acsDisableLocalAuth
    tags: tags
  }
}

module rbac 'modules/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    location: location
    tags: tags
    appIdentityName: '${abbrs.managedIdentityUserAssignedIdentities}api-${resourceToken}'
    eventGridIdentityName: '${abbrs.managedIdentityUserAssignedIdentities}evg-${resourceToken}'
    storageAccountName: storage.outputs.name
    deliveryReportsQueueName: storage.outputs.deliveryReportsQueueName
    deadLetterContainerName: deadLetterContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    communicationServiceName: communication.outputs.name
    acsSenderRoleDefinitionId: acsSenderRoleDefinitionId
    principalId: principalId
    principalType: principalType
    consoleAuthIdentityName: empty(consoleAuthClientId) ? '' : '${abbrs.managedIdentityUserAssignedIdentities}auth-${resourceToken}'
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  scope: rg
  params: {
    name: functionAppName
    planName: '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: tags
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    identityId: rbac.outputs.appIdentityId
    identityClientId: rbac.outputs.appIdentityClientId
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    acsEndpoint: communication.outputs.endpoint
    pythonVersion: pythonVersion
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    smsDefaultFrom: smsDefaultFrom
    smsSenderRatePerMinute: smsSenderRatePerMinute
    smsOptoutScope: smsOptoutScope
    smsAppWebhookUrl: smsAppWebhookUrl
    smsAppWebhookSecretUri: smsAppWebhookSecretUri
    consoleAuthClientId: consoleAuthClientId
    consoleAuthIdentityId: rbac.outputs.consoleAuthIdentityId
    consoleAuthIdentityClientId: rbac.outputs.consoleAuthIdentityClientId
  }
  // rbac.outputs above make this wait for the whole rbac module: the app starts only once its
  // identity can reach storage, App Insights and ACS.
}

module eventGrid 'modules/eventgrid.bicep' = {
  name: 'eventgrid'
  scope: rg
  params: {
    systemTopicName: '${abbrs.eventGridSystemTopics}acs-${resourceToken}'
    tags: tags
    communicationServiceName: communication.outputs.name
    storageAccountName: storage.outputs.name
    deliveryReportsQueueName: storage.outputs.deliveryReportsQueueName
    deadLetterContainerName: deadLetterContainerName
    eventGridIdentityId: rbac.outputs.eventGridIdentityId
  }
  // Through rbac.outputs, the queue and dead-letter grants of the Event Grid identity exist
  // before the subscription that uses them.
}

module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    namePrefix: resourceToken
    location: location
    tags: tags
    alertEmail: alertEmail
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    storageAccountName: storage.outputs.name
    systemTopicName: eventGrid.outputs.systemTopicName
    deliveryReportLagMinutes: deliveryReportLagMinutes
    queueBacklogThreshold: queueBacklogThreshold
  }
}

// azd writes these outputs into .azure/<env>/.env; the hooks read them.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output SERVICE_API_NAME string = functionApp.outputs.name
output SERVICE_API_URI string = functionApp.outputs.uri
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output ACS_NAME string = communication.outputs.name
output ACS_ENDPOINT string = communication.outputs.endpoint
output AZURE_STORAGE_ACCOUNT_ID string = storage.outputs.id
output EVENT_GRID_SYSTEM_TOPIC_NAME string = eventGrid.outputs.systemTopicName
output EVENT_GRID_SYSTEM_TOPIC_ID string = eventGrid.outputs.systemTopicId
output EVENT_GRID_IDENTITY_ID string = rbac.outputs.eventGridIdentityId
output EVENT_GRID_DEADLETTER_CONTAINER string = deadLetterContainerName
// The console and its sign-in (docs/deploy.md, "Protecting the console"): the federated identity
// credential on the app registration names this principal as its subject; empty while the
// sign-in is off.
output CONSOLE_URL string = '${functionApp.outputs.uri}/api/console'
output AZURE_CONSOLE_AUTH_IDENTITY_PRINCIPAL_ID string = rbac.outputs.consoleAuthIdentityPrincipalId
