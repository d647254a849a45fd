const { S3Client, PutObjectCommand, ListObjectsV2Command } = require('@aws-sdk/client-s3');
const fs = require('fs');
const s3 = new S3Client({
endpoint: 'YOUR_ENDPOINT',
region: 'YOUR_REGION',
credentials: {
accessKeyId: 'YOUR_ACCESS_KEY',
secretAccessKey: 'YOUR_SECRET_KEY',
},
forcePathStyle: true,
});
// Upload
await s3.send(new PutObjectCommand({
Bucket: 'YOUR_BUCKET',
Key: 'myfile.txt',
Body: fs.readFileSync('myfile.txt'),
}));
// List
const { Contents } = await s3.send(new ListObjectsV2Command({
Bucket: 'YOUR_BUCKET',
}));
Contents.forEach(obj => console.log(obj.Key, obj.Size));
