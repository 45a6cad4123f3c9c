import com.fasterxml.jackson.databind.ObjectMapper;
import java.util.*;
// Prints how Jackson 2.13.5 (the KCL 2.5.8 ObjectMapper) writes strings and byte[]:
//   J=$MULTILANGD_TESTBED/venv/lib/python3.11/site-packages/amazon_kclpy/jars
//   java -cp "$J/jackson-databind-2.13.5.jar:$J/jackson-core-2.13.5.jar:$J/jackson-annotations-2.13.5.jar" JacksonStrings.java
// Its output is the source of the partition-key line in hand-daemon-output.txt.
public class JacksonStrings {
  public static void main(String[] a) throws Exception {
    StringBuilder sb = new StringBuilder();
    for (char c = 0; c < 0x20; c++) sb.append(c);
    sb.append("\"\\/\u007f\u0080\u00a0\u2028\u2029\ud83e\udd80\ufeff");
    System.out.println(new ObjectMapper().writeValueAsString(sb.toString()));
    System.out.println(new ObjectMapper().writeValueAsString(new byte[]{}));
    System.out.println(new ObjectMapper().writeValueAsString(new byte[]{(byte)0xfb,(byte)0xff,1,2}));
  }
}
