// Event Grid system topic on the ACS resource.
// - SMSDeliveryReportReceived -> the `sms-delivery-reports` Storage queue, delivered with the
//   Event Grid user-assigned identity (Storage Queue Data Message Sender on that queue only).
// - SMSReceived -> POST /api/inbound as a webhook: created by the postdeploy hook
//   (infra/hooks/postdeploy.*), because Event Grid validates a webhook when the subscription is
//   created, and the endpoint answers only once the code is deployed.
// Both retry, then dead-letter into the `eventgrid-deadletter` blob container with the same
// identity (Storage Blob Data Contributor on that container only).
param systemTopicName string
param tags object
param communicationServiceName string
param storageAccountName string
param deliveryReportsQueueName string
param deadLetterContainerName string
param eventGridIdentityId string

@description('Event Grid retries delivery this many times (1-30) before it dead-letters the event.')
param maxDeliveryAttempts int = 30

@description('Minutes an undelivered event is retried before it is dead-lettered (max 1440).')
param eventTimeToLiveInMinutes int = 1440

resource communicationService 'Microsoft.Communication/communicationServices@2025-09-01' existing = {
  name: communicationServiceName
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' = {
  name: systemTopicName
  // A system topic lives where its source does: ACS is global.
  location: 'global'
  tags: tags
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${eventGridIdentityId}': {}
    }
  }
  properties: {
    source: communicationService.id
    topicType: 'Microsoft.Communication.CommunicationServices'
  }
}

resource deliveryReports 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = {
  parent: systemTopic
  name: 'sms-delivery-reports'
  properties: {
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: [
        'Microsoft.Communication.SMSDeliveryReportReceived'
      ]
    }
    deliveryWithResourceIdentity: {
      identity: {
        type: 'UserAssigned'
        userAssignedIdentity: eventGridIdentityId
      }
      destination: {
        endpointType: 'StorageQueue'
        properties: {
          resourceId: storage.id
          queueName: deliveryReportsQueueName
          // -1: the message never expires in the queue (the default is 7 days).
          queueMessageTimeToLiveInSeconds: -1
        }
      }
    }
    retryPolicy: {
      maxDeliveryAttempts: maxDeliveryAttempts
      eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
    }
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'UserAssigned'
        userAssignedIdentity: eventGridIdentityId
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: storage.id
          blobContainerName: deadLetterContainerName
        }
      }
    }
  }
}

output systemTopicName string = systemTopic.name
output systemTopicId string = systemTopic.id
output maxDeliveryAttempts int = maxDeliveryAttempts
output eventTimeToLiveInMinutes int = eventTimeToLiveInMinutes
