// Storage for the Functions host, the app's queues and tables, the Flex Consumption deployment
// package and Event Grid's dead letters. Shared keys are off: every caller uses Entra ID.
param name string
param location string
param tags object
param deploymentContainerName string
param deadLetterContainerName string

// Queue and table names are the contract in sms_core/storage.py (ALL_QUEUES, ALL_TABLES);
// tests/unit/test_infra.py fails when one of them is missing here. Every queue gets its
// `-poison` twin, where the Functions host moves a message after maxDequeueCount failures.
var queueNames = [
  'sms-outbound'
  'sms-delivery-reports'
  'sms-events'
  'sms-webhook-out'
  'sms-campaigns'
]
var tableNames = [
  'Messages'
  'ProviderMessageIds'
  'UnmatchedReports'
  'IdempotencyKeys'
  'AwaitingReports'
  'SenderPacing'
  'OptOuts'
  'OptOutHistory'
  'Conversations'
  'InboundMessages'
  'Analytics'
  'Campaigns'
  'CampaignRecipients'
  'Audiences'
  'Templates'
]

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    //checkov:skip=CKV_AZURE_206:Standard_LRS on purpose: the account holds one small app's queues and tables, ZRS is not offered in every Flex Consumption region and GRS fails over only by hand; switch the sku to Standard_ZRS where the region has it.
    //checkov:skip=CKV_AZURE_35:Default action Allow: the Flex Consumption app has no virtual network in this template, so a Deny firewall would lock the app out of its own storage; every request still needs an Entra ID token (allowSharedKeyAccess false).
    //checkov:skip=CKV_AZURE_59:Public network access stays enabled for the same reason (no virtual network or private endpoints here); access is identity-only and TLS 1.2+.
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
          keyType: 'Account'
        }
        file: {
          enabled: true
          keyType: 'Account'
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

// Flex Consumption reads the app package from here (written by `azd deploy`).
resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

// Events Event Grid could not deliver (after its retries) land here, one blob per event.
resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deadLetterContainerName
  properties: {
    publicAccess: 'None'
  }
}

// Audience files uploaded in parts (sms_core/adapters/upload_store.py, UPLOADS_CONTAINER): an
// import deletes its file when it ends; the rule below removes what an abandoned upload left.
resource uploadsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: 'audience-uploads'
  properties: {
    publicAccess: 'None'
  }
}

resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'abandoned-audience-uploads'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [ 'blockBlob' ]
              prefixMatch: [ 'audience-uploads/' ]
            }
            actions: {
              baseBlob: {
                delete: { daysAfterModificationGreaterThan: 7 }
              }
            }
          }
        }
      ]
    }
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [
  for queueName in queueNames: {
    parent: queueService
    name: queueName
  }
]

resource poisonQueues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [
  for queueName in queueNames: {
    parent: queueService
    name: '${queueName}-poison'
  }
]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource tables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [
  for tableName in tableNames: {
    parent: tableService
    name: tableName
  }
]

output name string = account.name
output id string = account.id
output blobEndpoint string = account.properties.primaryEndpoints.blob
output queueEndpoint string = account.properties.primaryEndpoints.queue
output tableEndpoint string = account.properties.primaryEndpoints.table
output deliveryReportsQueueName string = 'sms-delivery-reports'
output deadLetterContainerId string = deadLetterContainer.id
