curl -X DELETE -H "Authorization: Bearer YOUR_S3_KEY" \
YOUR_BASE_URL/s3/files/folder/myfile.txt
