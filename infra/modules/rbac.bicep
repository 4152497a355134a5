// The user-assigned identities and every role they hold. Nothing here is a key: the app and
// Event Grid get Entra ID tokens for exactly the data they touch; the optional console sign-in
// identity replaces a client secret.
param location string
param tags object
param appIdentityName string
param eventGridIdentityName string
param storageAccountName string
param deliveryReportsQueueName string
param deadLetterContainerName string
param applicationInsightsName string
param communicationServiceName string

@description('Role that lets the app identity send SMS with Entra ID (see main.bicep).')
param acsSenderRoleDefinitionId string

@description('Name of the identity the console sign-in uses as its client credential. Empty: console sign-in off, no identity.')
param consoleAuthIdentityName string = ''

@description('Optional operator principal that gets data access to queues, tables and dead letters.')
param principalId string = ''
param principalType string = 'User'

// Built-in role definition ids (Microsoft Learn: Azure built-in roles).
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageBlobDataReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageQueueDataMessageSender: 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

// The function app's identity: AzureWebJobsStorage__*, App Insights ingestion, ACS.
resource appIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: appIdentityName
  location: location
  tags: tags
}

// Event Grid's identity: writes delivery reports into their queue and dead letters into blobs.
resource eventGridIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: eventGridIdentityName
  location: location
  tags: tags
}

// The console sign-in's identity (only when it is on): App Service authentication presents a token
// of it to Entra ID instead of a client secret (federated identity credential on the console's
// app registration, OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID). Microsoft asks for an identity of its
// own, assigned to this app only: whoever holds it can sign in as the app registration
// (learn.microsoft.com/azure/app-service/configure-authentication-provider-aad, "Use a managed
// identity instead of a secret"). It holds no Azure role.
resource consoleAuthIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = if (!empty(consoleAuthIdentityName)) {
  name: consoleAuthIdentityName
  location: location
  tags: tags
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource deliveryReportsQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = {
  parent: queueService
  name: deliveryReportsQueueName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: deadLetterContainerName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource communicationService 'Microsoft.Communication/communicationServices@2025-09-01' existing = {
  name: communicationServiceName
}

// Functions host (leases, timers, the Flex deployment package) and the app's own data.
var appStorageRoles = [
  roles.storageBlobDataOwner
  roles.storageQueueDataContributor
  roles.storageTableDataContributor
]

resource appStorageAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for roleId in appStorageRoles: {
    name: guid(storage.id, appIdentity.id, roleId)
    scope: storage
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
      principalId: appIdentity.properties.principalId
      principalType: 'ServicePrincipal'
    }
  }
]

// App Insights with local auth off accepts telemetry only from this role.
resource appInsightsAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, appIdentity.id, roles.monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Sending SMS with Entra ID: scoped to this one ACS resource.
resource acsAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(communicationService.id, appIdentity.id, acsSenderRoleDefinitionId)
  scope: communicationService
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', acsSenderRoleDefinitionId)
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Event Grid may only add messages to the delivery-report queue (not read, not other queues).
resource eventGridQueueAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deliveryReportsQueue.id, eventGridIdentity.id, roles.storageQueueDataMessageSender)
  scope: deliveryReportsQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataMessageSender)
    principalId: eventGridIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource eventGridDeadLetterAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deadLetterContainer.id, eventGridIdentity.id, roles.storageBlobDataContributor)
  scope: deadLetterContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: eventGridIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// The operator (azd's AZURE_PRINCIPAL_ID): peek poison queues, read tables and dead letters.
var operatorRoles = [
  roles.storageQueueDataContributor
  roles.storageTableDataContributor
  roles.storageBlobDataReader
]

resource operatorAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for roleId in operatorRoles: if (!empty(principalId)) {
    name: guid(storage.id, principalId, roleId)
    scope: storage
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
      principalId: principalId
      principalType: principalType
    }
  }
]

output appIdentityId string = appIdentity.id
output appIdentityClientId string = appIdentity.properties.clientId
output appIdentityPrincipalId string = appIdentity.properties.principalId
output eventGridIdentityId string = eventGridIdentity.id
output consoleAuthIdentityId string = empty(consoleAuthIdentityName) ? '' : consoleAuthIdentity.id
output consoleAuthIdentityClientId string = empty(consoleAuthIdentityName) ? '' : consoleAuthIdentity.properties.clientId
output consoleAuthIdentityPrincipalId string = empty(consoleAuthIdentityName) ? '' : consoleAuthIdentity.properties.principalId
