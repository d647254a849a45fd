curl -X POST YOUR_BASE_URL/s3/upload \
-H "Authorization: Bearer YOUR_S3_KEY" \
-F "file=@myfile.txt" \
-F "key=folder/myfile.txt"
curl -H "Authorization: Bearer YOUR_S3_KEY" \
YOUR_BASE_URL/s3/files?prefix=folder/&limit=50
curl -H "Authorization: Bearer YOUR_S3_KEY" \
YOUR_BASE_URL/s3/files/folder/myfile.txt -o myfile.txt
curl -H "Authorization: Bearer YOUR_S3_KEY" \
YOUR_BASE_URL/s3/usage
